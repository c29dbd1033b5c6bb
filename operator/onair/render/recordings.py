"""Recording objects (``onair.api.recording``) from what the recorder reports, and the pod that
deletes a recording's files when no recorder runs on its volume. Pure.

One Recording per finished session, named from the session so that every poll of every operator
(a restarted one included) arrives at the same object: creating it is idempotent, and the
Livestream's ``status.recordings`` can name it before or after it exists.
"""

from __future__ import annotations

from typing import Mapping, Optional

from onair import roles
from onair.endpoints import vod_playlist_name
from onair.api.agent import Recording as FinishedSession
from onair.api.meta import API_VERSION, GROUP, LABEL_LIVESTREAM, MANAGER
from onair.api.recording import (
    NO_PLAYLIST,
    NO_PUBLIC_BASE_URL,
    NOT_UPLOADED_YET,
    SERVED_FROM_VOLUME,
    VOLUME_ONLY,
    ObjectStorageLocation,
    PartPlayback,
    RecordingPlayback,
)
from onair.api.settings import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, CallSettings, RecordingStorage, S3Storage
from onair.render.agent_configs import RECORDINGS_DIR, S3_SECRET_DIR, render_s3_upload
from onair.render.deployments import container_security_context, pod_security_context

KIND = "Recording"
LABEL_SOURCE = f"{GROUP}/recording-source"
LABEL_DELETES = f"{GROUP}/deletes-recording"
COMPONENT_DELETION = "recording-deletion"
# The session prefix: ``<namespace>_<livestream>_<YYYYmmddTHHMMSSZ>`` (onair.agent.recorder.naming).
STAMP_LENGTH = len("20250102T030405Z")
STORAGE_VOLUME = "pvc"
STORAGE_VOLUME_AND_OBJECTS = "pvc+s3"
# Bounded so a deletion pod that cannot run (volume attached elsewhere) never lingers for ever.
DELETION_POD_DEADLINE_SECONDS = 600


class NotASession(ValueError):
    """A session name that is not ``<namespace>_<livestream>_<YYYYmmddTHHMMSSZ>``."""


def session_stamp(session: str) -> str:
    stamp = session.rsplit("_", 1)[-1]
    if (
        len(stamp) != STAMP_LENGTH
        or stamp[8] != "T"
        or not stamp.endswith("Z")
        or not (stamp[:8] + stamp[9:15]).isdigit()
    ):
        raise NotASession(f"{session!r} is not a recording session (<namespace>_<livestream>_<YYYYmmddTHHMMSSZ>)")
    return stamp


def recording_name(livestream: str, session: str) -> str:
    """``<livestream>-<yyyymmddthhmmssz>``: a DNS label (a Livestream name has at most 45 characters,
    so this has at most 62), unique per namespace because one Livestream's sessions never share a start
    second (the recorder picks an unused one)."""
    return f"{livestream}-{session_stamp(session).lower()}"


def human_duration(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def human_size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    raise AssertionError("unreachable")


def object_storage_location(effective: CallSettings) -> Optional[dict]:
    """``spec.objectStorage`` from the Livestream's ``recording.storage.s3`` (None without a complete one)."""
    storage = effective.recording.storage if effective.recording else None
    s3 = storage.s3 if storage else None
    if s3 is None or not (s3.endpoint and s3.bucket and s3.credentials_secret):
        return None
    return ObjectStorageLocation(
        endpoint=s3.endpoint,
        bucket=s3.bucket,
        prefix=s3.prefix,
        region=s3.region,
        force_path_style=s3.force_path_style,
        public_base_url=s3.public_base_url,
        credentials_secret=s3.credentials_secret,
    ).wire()


def stored_in(location: Optional[Mapping], stored: Mapping) -> bool:
    """Whether the object ``stored`` (a part's ``object``) is in the bucket ``location`` names."""
    if not location:
        return False
    bucket = str(stored.get("url") or "").removeprefix("s3://").partition("/")[0]
    return bucket == location.get("bucket") and stored.get("endpoint") == location.get("endpoint")


def recording_spec(
    livestream: str,
    livestream_uid: Optional[str],
    session: FinishedSession,
    claim: Optional[str],
    storage: Optional[dict] = None,
) -> dict:
    """``spec`` of the Recording of ``session`` (camelCase, JSON-ready). ``storage``: the Livestream's
    ``object_storage_location``, kept only once a part is in that very bucket (settings changed
    since the upload would name the wrong one)."""
    parts = []
    for part in session.parts:
        entry: dict = {"file": part.file, "bytes": part.bytes}
        if part.duration_seconds is not None:
            entry["durationSeconds"] = part.duration_seconds
        if claim:
            entry["volume"] = {"persistentVolumeClaim": claim, "path": part.file}
        if part.object is not None:
            entry["object"] = part.object.wire()
        if part.upload_error:
            entry["uploadError"] = part.upload_error
        parts.append(entry)
    wire = session.wire()  # the recorder's own spelling of its times, kept as they are
    spec: dict = {
        "livestream": {"name": livestream, **({"uid": livestream_uid} if livestream_uid else {})},
        "session": session.session,
        "startedAt": wire["startedAt"],
        "endedAt": wire["endedAt"],
        "durationSeconds": round(session.duration_seconds, 3),
        "sizeBytes": sum(p.bytes for p in session.parts),
        "endReason": session.end_reason,
        "parts": parts,
    }
    if session.record_type:
        spec["source"] = session.record_type
    if session.recovered:
        spec["recovered"] = True
    if claim:
        spec["persistentVolumeClaim"] = claim
    if storage and any(stored_in(storage, part["object"]) for part in parts if part.get("object")):
        spec["objectStorage"] = storage
    return spec


def recording_manifest(
    namespace: str,
    livestream: str,
    livestream_uid: Optional[str],
    session: FinishedSession,
    claim: Optional[str],
    finalizer: str,
    storage: Optional[dict] = None,
) -> dict:
    """The whole object to create. No ownerReference: it outlives the Livestream.

    ``finalizer`` (the operator's) is set at creation, so a Recording deleted right after it was
    created still gets its media deleted."""
    spec = recording_spec(livestream, livestream_uid, session, claim, storage)
    labels = {"app.kubernetes.io/name": "onair", "app.kubernetes.io/part-of": "onair", LABEL_LIVESTREAM: livestream}
    if session.record_type:
        labels[LABEL_SOURCE] = session.record_type
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": recording_name(livestream, session.session),
            "namespace": namespace,
            "labels": labels,
            "finalizers": [finalizer],
        },
        "spec": spec,
    }


def recording_status(
    spec: Mapping,
    previous: Optional[Mapping] = None,
    generation: Optional[int] = None,
    volume_url: Optional[str] = None,
) -> dict:
    """The derived ``status`` (columns), keeping the conditions of ``previous``. ``volume_url``:
    where the Livestream's origin serves the recordings on its volume (``<playback base>/recordings``),
    while the Livestream exists and records to the Recording's volume."""
    parts = spec.get("parts") or []
    uploaded = bool(parts) and all(part.get("object") for part in parts)
    out: dict = {
        "duration": human_duration(float(spec.get("durationSeconds") or 0)),
        "size": human_size(float(spec.get("sizeBytes") or 0)),
        "storage": STORAGE_VOLUME_AND_OBJECTS if uploaded else STORAGE_VOLUME,
    }
    playback = recording_playback(spec, volume_url)
    if playback is not None:
        out["playback"] = playback
    if generation is not None:
        out["observedGeneration"] = generation
    conditions = (previous or {}).get("conditions")
    if conditions:
        out["conditions"] = conditions
    return out


def object_http_url(base: str, s3_url: str) -> str:
    """``s3://<bucket>/<key>`` read through the bucket's HTTP address ``base`` (``publicBaseUrl``)."""
    key = s3_url.removeprefix("s3://").partition("/")[2]
    return f"{base.rstrip('/')}/{key}"


def recording_playback(spec: Mapping, volume_url: Optional[str] = None) -> Optional[dict]:
    """``status.playback``: the HLS VOD URLs of the recording's parts over HTTP(S), or why there are none.

    A URL only when every part's playlist is in the bucket and the bucket's HTTP address is known
    (``publicBaseUrl``): a recording with a hole in the middle is not offered as playable."""
    parts = spec.get("parts") or []
    if not parts:
        return None
    location = spec.get("objectStorage") or {}
    objects = [part.get("object") for part in parts]
    if not all(objects):
        done = sum(1 for o in objects if o)
        if not location and not done and not any(part.get("uploadError") for part in parts):
            claim = spec.get("persistentVolumeClaim") or "the recordings volume"
            livestream = (spec.get("livestream") or {}).get("name")
            if volume_url:
                urls = [
                    PartPlayback(file=part["file"], url=f"{volume_url.rstrip('/')}/{vod_playlist_name(part['file'])}")
                    for part in parts
                ]
                return RecordingPlayback(
                    url=urls[0].url if len(urls) == 1 else None,
                    parts=urls,
                    reason=SERVED_FROM_VOLUME,
                    message=(
                        f"served from PersistentVolumeClaim {claim} by Livestream {livestream}'s origin, under its "
                        "access rules (a playback token while it is in backstage): these URLs stop working when the "
                        "Livestream is deleted or no longer records to this volume (the files stay). For URLs that "
                        "outlive it, set recording.storage.s3 with publicBaseUrl"
                    ),
                ).wire()
            return RecordingPlayback(
                reason=VOLUME_ONLY,
                message=(
                    f"the parts are only on PersistentVolumeClaim {claim}, and no origin serves it: Livestream "
                    f"{livestream} is gone or no longer records to it (the files stay). Set recording.storage.s3 (with "
                    "publicBaseUrl) on the CallType or Livestream for playback URLs that outlive the stream"
                ),
            ).wire()
        return RecordingPlayback(
            reason=NOT_UPLOADED_YET,
            message=(
                f"{done} of {len(parts)} part(s) uploaded; the URL appears once every part is in the bucket "
                "(the Livestream's RecordingsUploaded condition says why uploads wait)"
            ),
        ).wire()
    missing = [part["file"] for part in parts if not part["object"].get("playlist")]
    if missing:
        return RecordingPlayback(
            reason=NO_PLAYLIST,
            message=(
                f"no HLS VOD playlist for {', '.join(missing)} (not a fragmented MP4, see the recorder's log); the parts "
                "themselves are in the bucket (spec.parts[].object.url)"
            ),
        ).wire()
    base = location.get("publicBaseUrl")
    if not base or not all(stored_in(location, o) for o in objects):
        where = parts[0]["object"]["url"].rsplit("/", 1)[0] + "/"
        return RecordingPlayback(
            reason=NO_PUBLIC_BASE_URL,
            message=(
                f"the parts and their playlists are in {where}, but onair knows no HTTP address for that bucket: set "
                "recording.storage.s3.publicBaseUrl (the bucket's public endpoint, or a CDN in front of it) on the "
                "CallType or Livestream; this Recording takes it at the next status poll while its Livestream exists. "
                "A presigned URL would not play: the playlist names its part by a relative URI, which carries no "
                "signature"
            ),
        ).wire()
    urls = [PartPlayback(file=part["file"], url=object_http_url(base, part["object"]["playlist"])) for part in parts]
    return RecordingPlayback(url=urls[0].url if len(urls) == 1 else None, parts=urls).wire()


def spec_update(current: Mapping, wanted: Mapping) -> Optional[dict]:
    """What of ``wanted`` differs from the stored ``current`` spec (a merge patch of spec), None
    when nothing does. Only what the recorder can change after the session ended is compared:
    the parts (uploads, a part re-probed) and the totals."""
    keys = ("parts", "sizeBytes", "durationSeconds", "source", "persistentVolumeClaim")
    patch = {key: wanted.get(key) for key in keys if current.get(key) != wanted.get(key)}
    # Set once, when the first upload is confirmed: later settings may name another bucket.
    if wanted.get("objectStorage") and not current.get("objectStorage"):
        patch["objectStorage"] = wanted["objectStorage"]
    elif wanted.get("objectStorage") and current.get("objectStorage"):
        # Where players read the bucket is delivery, not where the media are: it follows the
        # settings (a CDN added or moved later) while they name the very same bucket.
        now, then = wanted["objectStorage"], current["objectStorage"]
        same_bucket = all(now.get(k) == then.get(k) for k in ("endpoint", "bucket"))
        if same_bucket and now.get("publicBaseUrl") != then.get("publicBaseUrl"):
            patch["objectStorage"] = {"publicBaseUrl": now.get("publicBaseUrl")}
    return patch or None


def livestream_recording_entries(livestream: str, sessions: list[FinishedSession]) -> list[dict]:
    """``status.recordings`` of the Livestream: each finished session with the name of its Recording."""
    return [{**session.wire(), "name": recording_name(livestream, session.session)} for session in sessions]


def deletion_pod_name(recording: str) -> str:
    return f"{recording}-delete-media"


def deletion_pod(recording: Mapping, image: str, image_pull_policy: str, image_pull_secrets: list[str]) -> dict:
    """A one-shot pod that mounts the recordings volume and deletes one session's files
    (``onair agent recorder --delete-session``): how media are deleted when no recorder runs on the
    volume (the Livestream is gone, or records no more). Same image, user and restrictions as the
    recorder; no token, no network use."""
    meta, spec = recording["metadata"], recording["spec"]
    livestream = spec["livestream"]["name"]
    volumes: list[dict] = [
        {"name": "recordings", "persistentVolumeClaim": {"claimName": spec["persistentVolumeClaim"]}}
    ]
    mounts: list[dict] = [{"name": "recordings", "mountPath": RECORDINGS_DIR}]
    s3_args: list[str] = []
    s3 = deletion_s3_config(spec)
    if s3 is not None:
        location = spec["objectStorage"]
        s3_args = ["--s3-config", s3.model_dump_json(by_alias=True, exclude_defaults=True)]
        # Mounted like the recorder's (optional: a missing Secret is reported by the command, in
        # words, instead of a pod stuck in ContainerCreating).
        volumes.append(
            {
                "name": "s3-credentials",
                "secret": {
                    "secretName": location["credentialsSecret"],
                    "defaultMode": 0o440,
                    "optional": True,
                    "items": [{"key": k, "path": k} for k in (S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY)],
                },
            }
        )
        mounts.append({"name": "s3-credentials", "mountPath": S3_SECRET_DIR, "readOnly": True})
    container = {
        "name": "delete-media",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "command": list(roles.MEDIA_ROLES["recorder"].command),
        "args": [
            "agent",
            "recorder",
            "--delete-session",
            spec["session"],
            "--livestream",
            f"{meta['namespace']}/{livestream}",
            "--output-dir",
            RECORDINGS_DIR,
            *s3_args,
        ],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        # The error the command prints is what the operator shows on the Recording.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": DELETION_POD_DEADLINE_SECONDS,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    if image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": deletion_pod_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {
                "app.kubernetes.io/name": "onair",
                "app.kubernetes.io/part-of": "onair",
                "app.kubernetes.io/managed-by": MANAGER,
                "app.kubernetes.io/component": COMPONENT_DELETION,
                LABEL_DELETES: meta["name"],
            },
            # Owned by the Recording: if the Recording goes some other way (its finalizer removed
            # by hand), the pod goes with it.
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": pod_spec,
    }


def deletion_s3_config(spec: Mapping):
    """The S3 settings the deletion pod deletes the objects with: from ``spec.objectStorage`` when a
    part was uploaded there; None otherwise (nothing to delete, or nowhere known to delete it from)."""
    location = spec.get("objectStorage")
    if not any(stored_in(location, part["object"]) for part in spec.get("parts") or () if part.get("object")):
        return None
    assert location is not None
    fields = {k: v for k, v in location.items() if k != "credentialsSecret"}
    return render_s3_upload(RecordingStorage(s3=S3Storage.model_validate(fields)))
