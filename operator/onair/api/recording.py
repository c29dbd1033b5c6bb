"""Recording: one finished recording session as a Kubernetes object (namespaced, owned by nothing).

The operator creates one per session the Livestream's recorder finalized, in the Livestream's
namespace, named ``<livestream>-<session start, lower case>`` and labelled
``onair.dev/livestream=<livestream>``. It has no ownerReference: a recording outlives its
Livestream (see docs/recordings.md), and deleting the Livestream never deletes it.

What was recorded is in ``spec`` and not in ``status``: once the Livestream and its recorder are
gone nothing can observe the recording again, so these facts must survive what a status does not
(backup and restore tools, GitOps exports drop status). The operator writes ``spec`` from the
recorder's report (and updates it when parts get uploaded); ``status`` holds what is derived from
it (the human-readable columns) and the state of a deletion.

Deleting a Recording deletes its media first (the operator's finalizer ``onair.dev/finalizer``):
the part files and sidecar on the volume and the uploaded objects. While that cannot happen the
``MediaDeleted`` condition (False) and a Warning Event say why and how to fix it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Optional

from pydantic import Field

from .agent import StoredObject
from .base import ApiModel
from .conditions import Condition

RecordingSource = Literal["origin", "transcoded"]

# Condition of a Recording being deleted, and its reasons (each also an Event on the Recording).
MEDIA_DELETED = "MediaDeleted"
MEDIA_DELETION_PENDING = "MediaDeletionPending"  # working on it (a deletion pod runs, ...)
MEDIA_DELETION_FAILED = "MediaDeletionFailed"  # tried and failed: the message says why and what to do
RECORDER_UNREACHABLE = "RecorderUnreachable"  # the Livestream's recorder holds the volume but does not answer
OBJECT_DELETION_NOT_CONFIGURED = "ObjectStorageDeletionNotConfigured"
# Normal Event once the media are gone (the object follows at once).
MEDIA_DELETED_EVENT = "MediaDeleted"
# Normal Event on the Livestream when the operator creates a Recording for a finished session.
RECORDING_CREATED_EVENT = "RecordingCreated"


class LivestreamRef(ApiModel):
    name: str = Field(description="the Livestream that recorded it (it may be gone)")
    uid: Optional[str] = Field(
        None, description="its metadata.uid: tells a Livestream deleted and re-created under the same name apart"
    )


class VolumeLocation(ApiModel):
    persistent_volume_claim: str = Field(
        description="the recordings PersistentVolumeClaim, in the Recording's namespace"
    )
    path: str = Field(description="the file's path inside that volume")


class RecordingPart(ApiModel):
    file: str = Field(description="the part's file name")
    bytes: int = Field(ge=0)
    duration_seconds: Optional[float] = Field(
        None, description="what ffprobe reads from the file; unset when unreadable"
    )
    volume: Optional[VolumeLocation] = Field(None, description="where the file is on the recordings volume")
    object: Optional[StoredObject] = Field(
        None,
        description=("the part in object storage once its upload was confirmed; unset while it is only on the volume"),
    )
    upload_error: Optional[str] = Field(
        None, description="why the last upload attempt failed (the recorder keeps retrying)"
    )


class ObjectStorageLocation(ApiModel):
    """Where the parts were uploaded, as ``recording.storage.s3`` said then: what a deletion needs
    once the Livestream (and its settings) may be gone. No secret value, only the Secret's name."""

    endpoint: str
    bucket: str
    prefix: Optional[str] = None
    region: Optional[str] = None
    force_path_style: Optional[bool] = None
    public_base_url: Optional[str] = Field(
        None,
        description=(
            "recording.storage.s3.publicBaseUrl: where players read the objects over HTTP(S); follows the settings "
            "while they name this bucket"
        ),
    )
    credentials_secret: str = Field(
        description="the Secret (in the Recording's namespace) with accessKeyId and "
        "secretAccessKey that may list and delete the objects"
    )


class RecordingSpec(ApiModel):
    """Written by the operator from the recorder's report; not meant to be edited."""

    livestream: LivestreamRef
    session: str = Field(
        description="<namespace>_<livestream>_<YYYYmmddTHHMMSSZ>: the prefix of the part files "
        "and the name of the sidecar (<session>.json)"
    )
    source: Optional[RecordingSource] = Field(
        None, description=("origin: the source as pushed or pulled; transcoded: the top rendition of the HLS output")
    )
    started_at: datetime = Field(description="first media")
    ended_at: datetime = Field(description="when the session was finalized")
    duration_seconds: float = Field(ge=0, description="recorded seconds, all parts")
    size_bytes: int = Field(ge=0, description="bytes of all parts")
    end_reason: str = Field(description="recording stopped, source gone for <n>s, agent stopped, or recovered: ...")
    recovered: Optional[bool] = Field(
        None, description="finalized by a later recorder: the one recording it was killed"
    )
    persistent_volume_claim: Optional[str] = Field(
        None, description=("the recordings volume the parts and the sidecar were written to")
    )
    parts: list[RecordingPart] = Field(default_factory=list, json_schema_extra={"x-kubernetes-list-type": "atomic"})
    object_storage: Optional[ObjectStorageLocation] = Field(
        None,
        description=(
            "the object storage the parts were uploaded to (recording.storage.s3 at the time): where deleting the "
            "Recording deletes its objects"
        ),
    )


# status.playback.reason when a Recording has no HTTP URL (the message says what to do).
NO_PUBLIC_BASE_URL = "NoPublicBaseUrl"  # uploaded, but the bucket's HTTP address is not configured
NOT_UPLOADED_YET = "NotUploadedYet"  # object storage configured, some part still only on the volume
VOLUME_ONLY = "VolumeOnly"  # on the recordings volume only (no object storage)
NO_PLAYLIST = "NoPlaylist"  # a part is no fragmented MP4: no VOD playlist could be built
# status.playback.reason when the URLs are the Livestream origin's, served from the recordings volume.
SERVED_FROM_VOLUME = "ServedFromVolume"


class PartPlayback(ApiModel):
    file: str
    url: str = Field(description="the part's HLS VOD playlist over HTTP(S)")


class RecordingPlayback(ApiModel):
    """Where a viewer plays the recording (HLS VOD): any HLS player, or the player page with ``?src=<url>``."""

    url: Optional[str] = Field(
        None,
        description=(
            "the whole recording: its only part's playlist; unset when it has several (play parts[] in order)"
        ),
    )
    parts: Optional[list[PartPlayback]] = Field(
        None,
        description="each part's playlist, in recording order",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    reason: Optional[str] = Field(
        None,
        description=(
            "why there is no URL: NoPublicBaseUrl, NotUploadedYet, VolumeOnly or NoPlaylist; ServedFromVolume: the "
            "URLs are the Livestream origin's, valid while the Livestream exists"
        ),
    )
    message: Optional[str] = Field(None, description="what it means and what to do")


class RecordingStatus(ApiModel):
    observed_generation: Optional[int] = None
    duration: Optional[str] = Field(None, description="spec.durationSeconds for people, e.g. 1h02m03s")
    size: Optional[str] = Field(None, description="spec.sizeBytes for people, e.g. 1.2GiB")
    storage: Optional[str] = Field(
        None, description=("where the media are: pvc (on the recordings volume only), pvc+s3 (every part uploaded too)")
    )
    playback: Optional[RecordingPlayback] = Field(
        None, description=("HTTP(S) HLS VOD URLs of the recording, or why there are none")
    )
    conditions: Optional[list[Condition]] = Field(
        None, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
    )


class Recording(ApiModel):
    api_version: Literal["onair.dev/v1alpha1"] = "onair.dev/v1alpha1"
    kind: Literal["Recording"] = "Recording"
    metadata: Optional[dict] = None
    spec: RecordingSpec
    status: Optional[RecordingStatus] = None
