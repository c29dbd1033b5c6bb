"""Livestream: one stream or event, namespaced.

The lifecycle is desired state in ``spec`` so a GitOps commit or a ``kubectl patch`` expresses
every transition (GetStream's goLive/stopLive calls, Gcore's active switch, start/stop
recording, clear DVR); what actually happened is in ``status``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field

from .agent import Recording
from .base import ApiModel
from .conditions import Condition
from .settings import CallSettings
from .webhooks import WebhookStatus

Phase = Literal["backstage", "live", "ended"]
Projection = Literal["regular", "vr360", "vr180", "vr360tb"]
PULL_URI_PATTERN = r"^(rtmps?|srt|https?)://[^\s]+$"


class Member(ApiModel):
    user_id: str = Field(min_length=1, max_length=128, description="Your system's user id")
    role: str = Field(
        min_length=1,
        max_length=64,
        description=(
            "A role named in the CallType's grants, e.g. host; the member gets that role's capabilities "
            "(an unknown role grants none and is reported with an UnknownMemberRole Event)"
        ),
    )
    revoke_tokens_issued_before: Optional[datetime] = Field(
        None,
        description=(
            "GetStream's revoke_tokens_issued_before: the ingest refuses this member's personal publish tokens "
            "issued before this instant (token_revoked) and drops such a publisher; tokens minted later work. "
            "Removing the member, or the role's send-audio/send-video grant, revokes all of them."
        ),
    )


class GoLiveOptions(ApiModel):
    """Applied whenever spec.phase is live: GetStream's goLive flags."""

    start_hls: Optional[bool] = Field(
        None, description=("Start HLS/DASH broadcasting when going live even if broadcasting.mode is 'available'.")
    )
    start_recording: Optional[bool] = Field(
        None, description=("Start recording when going live even if recording.mode is 'available'.")
    )


class StopLiveOptions(ApiModel):
    """Applied whenever spec.phase is backstage after going live: GetStream's stopLive flags."""

    continue_hls: Optional[bool] = Field(None, description="Keep broadcasting while back in backstage.")
    continue_recording: Optional[bool] = Field(None, description="Keep recording while back in backstage.")


class Source(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.mode != 'pull' || (has(self.uris) && size(self.uris) > 0)",
                    "message": "source.mode pull needs at least one entry in source.uris",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": "self.mode != 'push' || !has(self.uris) || size(self.uris) == 0",
                    "message": "source.uris is only used with source.mode pull; remove it or set mode: pull",
                },
            ]
        }
    )

    mode: Literal["push", "pull"] = Field(
        description=("push: encoders push to the ingest URLs (default). pull: the transcoder pulls from uris.")
    )
    uris: Optional[list[str]] = Field(
        None,
        max_length=8,
        description=("Pull mode: HLS, RTMP(S) or SRT URLs, tried round-robin when one fails."),
        json_schema_extra={"items": {"pattern": PULL_URI_PATTERN, "maxLength": 2048}},
    )


class LivestreamSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.members) || self.members.all(m, self.members.exists_one(n, n.userId == m.userId))",
                    "message": "each userId may appear in members only once",
                },
            ]
        }
    )

    call_type: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the cluster-scoped CallType with this stream's presets and grants. Immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "callType is immutable; create a new Livestream to change it"}
            ]
        },
    )
    display_name: Optional[str] = Field(
        None, max_length=256, description="Human-readable name, e.g. 'Conference in July'."
    )
    active: Optional[bool] = Field(
        None,
        description=(
            "On/off switch. false stops pulling and refuses every push; the objects and URLs stay. Default true."
        ),
    )
    phase: Optional[Phase] = Field(
        None,
        description=(
            "Desired lifecycle phase. backstage: only members with join-backstage can watch; live: "
            "everyone can; ended: the event is over, pushes are refused and the DVR stays playable. "
            "backstage ↔ live any number of times; ended is final. Default: backstage when the "
            "CallType enables backstage, otherwise live."
        ),
    )
    starts_at: Optional[datetime] = Field(
        None,
        description=("Scheduled start. With backstage.joinAheadTimeSeconds, viewers may join that long before it."),
    )
    go_live: Optional[GoLiveOptions] = None
    stop_live: Optional[StopLiveOptions] = None
    broadcasting: Optional[bool] = Field(
        None,
        description=(
            "Explicitly start (true) or stop (false) HLS/DASH broadcasting, like start/stopHLSBroadcasting. "
            "false also stops the backstage preview. Unset: follow the phase and broadcasting.mode."
        ),
    )
    recording: Optional[bool] = Field(
        None,
        description=(
            "Explicitly start (true) or stop (false) recording, like start/stopRecording. Unset: follow "
            "the phase and recording.mode."
        ),
    )
    dvr_cleared_at: Optional[datetime] = Field(
        None,
        description=("Set to now to clear the DVR window (like ClearDvr); the operator clears once per new value."),
    )
    source: Optional[Source] = None
    settings_override: Optional[CallSettings] = Field(
        None, description=("Any subset of the CallType's settings; wins over the CallType.")
    )
    members: Optional[list[Member]] = Field(
        None,
        max_length=100,
        description="Users and their roles.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    projection: Optional[Projection] = Field(None, description="360° mode of the player. Default regular.")
    custom_data: Optional[dict[str, Any]] = Field(
        None,
        description="Free metadata for your own systems.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class IngestEndpoints(ApiModel):
    """Push URLs without credentials: keys live in the Secret named by status.credentialsSecret."""

    rtmp: Optional[str] = None
    rtmps: Optional[str] = None
    srt: Optional[str] = None
    whip: Optional[str] = None
    backup_rtmp: Optional[str] = None
    backup_rtmps: Optional[str] = None
    backup_srt: Optional[str] = None
    backup_whip: Optional[str] = None


class PlaybackUrls(ApiModel):
    hls_cmaf: Optional[str] = None
    hls_mpegts: Optional[str] = None
    dash: Optional[str] = None
    player: Optional[str] = None
    screenshot: Optional[str] = None
    whep: Optional[str] = Field(
        None,
        description=(
            "WebRTC playback (WHEP, draft-ietf-wish-whep): POST an SDP offer (Content-Type application/sdp; a playback "
            "token as Authorization: Bearer while backstage) and get 201 with the answer and a Location to DELETE when "
            "done. H.264 and Opus; set only when broadcasting.outputs.webrtc is on"
        ),
    )


class FinishedRecording(Recording):
    """A finished session as the recorder reports it, and the Recording object that stands for it."""

    name: Optional[str] = Field(
        None,
        description=(
            "the Recording object of this session in the Livestream's namespace (kubectl get recording <name>); "
            "it outlives the Livestream"
        ),
    )


class LivestreamStatus(ApiModel):
    observed_generation: Optional[int] = None
    phase: Optional[Phase] = Field(None, description="The phase the stream is in now.")
    live: Optional[bool] = Field(None, description="The main ingest is receiving media.")
    backup_live: Optional[bool] = Field(None, description="The backup ingest is receiving media.")
    publisher: Optional[str] = Field(
        None,
        description=(
            "userId of the member publishing on the main ingest with their personal publish token; unset while "
            "nobody publishes or the publisher used the stream key."
        ),
    )
    backup_publisher: Optional[str] = Field(None, description="The same for the backup ingest.")
    active_source: Optional[Literal["main", "backup", "pull"]] = Field(
        None,
        description="The source the transcoder has on air now; unset while none is (during a switch, or no "
        "source delivers).",
    )
    last_active_source: Optional[Literal["main", "backup", "pull"]] = Field(
        None,
        description="The source most recently on air, kept while none is: how a failover through a moment "
        "without any source is still told apart from a source that merely came back.",
    )
    source_switches: Optional[dict[str, int]] = Field(
        None,
        description=(
            "Source switches viewers saw, by the source switched to (main, backup), as counted by the running "
            "transcoder (they restart from 0 with it)."
        ),
    )
    viewers_allowed: Optional[bool] = Field(
        None, description="Playback open to everyone (live, or join-ahead reached)."
    )
    broadcasting: Optional[bool] = Field(
        None,
        description=(
            "Public HLS/DASH broadcasting is happening now (GetStream's egress.broadcasting): it should be on "
            "(broadcastingDesired) and the transcoder published a segment within the last few segment durations. "
            "False while broadcasting is off, while no source delivers, and while the transcoder fails (then the "
            "Ready condition says why). The backstage preview is not broadcasting: see outputsProduced."
        ),
    )
    broadcasting_desired: Optional[bool] = Field(
        None,
        description=(
            "Public HLS/DASH broadcasting should be on now, from spec.broadcasting, goLive/stopLive, "
            "broadcasting.mode, active and the phase; broadcasting says whether it is."
        ),
    )
    outputs_produced: Optional[bool] = Field(
        None,
        description=(
            "The transcoder is producing HLS/DASH segments now, for viewers (broadcasting), for members with a "
            "playback token (the backstage preview) or for a transcoded recording."
        ),
    )
    recording: Optional[bool] = Field(
        None,
        description=(
            "A recording session is open: media is being written, or the recorder is reconnecting to a source "
            "within its finalize window (a failover from main to backup is one recording, not two)."
        ),
    )
    recording_duration_seconds: Optional[float] = Field(
        None,
        description=(
            "Seconds recorded in the open recording session, else in the last finished one (kept after the "
            "recording, the stream or the recorder pod is gone)."
        ),
    )
    recordings: Optional[list[FinishedRecording]] = Field(
        None,
        description=(
            "Finished recording sessions on the recordings volume, oldest first (at most the latest 50): parts "
            "with their file names, sizes and durations, and the name of the Recording object of each (Gcore's "
            "StopRecording answers with the video). Kept when the recorder stops reporting."
        ),
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    transcoding_speed: Optional[float] = None
    transcoded_qualities: Optional[list[str]] = None
    origin_replicas: Optional[str] = Field(
        None,
        description=(
            'With settings origin.replicas > 1: origin replicas answering / wanted ("2/3"). One down is no outage '
            "(the others serve viewers the same playlists) and is an OriginReplicasDown Warning Event, not a failure "
            "of the stream; once back it copies a peer's DVR before it serves."
        ),
    )
    ingest: Optional[IngestEndpoints] = None
    playback: Optional[PlaybackUrls] = None
    credentials_secret: Optional[str] = Field(
        None, description="Secret with streamKey, srtPassphrase, whipToken and full publish URLs."
    )
    backstage_members: Optional[list[str]] = Field(
        None,
        description=(
            "userIds of the members whose role (CallType grants) has join-backstage: they may watch in backstage."
        ),
    )
    member_tokens_secret: Optional[str] = Field(
        None,
        description=(
            "Secret with one playback token per backstage member (key: the userId, characters outside "
            "[-._a-zA-Z0-9] replaced and a hash appended), re-minted every 12 h, valid 24 h."
        ),
    )
    live_since: Optional[datetime] = None
    dvr_cleared_at: Optional[datetime] = None
    effective_settings: Optional[CallSettings] = Field(
        None, description="CallType settings merged with the override and defaults."
    )
    webhooks: Optional[WebhookStatus] = Field(
        None,
        description=(
            "Deliveries to settings.webhooks: pending and failing ones (kubectl get configmap <name>-webhook-outbox "
            "holds the queue)."
        ),
    )
    conditions: Optional[list[Condition]] = Field(
        None, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
    )


class Livestream(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.metadata.name.size() <= 45",
                    "message": "metadata.name must be at most 45 characters: child objects append suffixes such as -ingest-backup",
                },
                {
                    "rule": "!has(oldSelf.spec.phase) || oldSelf.spec.phase != 'ended' || (has(self.spec.phase) && self.spec.phase == 'ended')",
                    "message": "an ended Livestream cannot go back to backstage or live; create a new Livestream",
                },
            ]
        }
    )

    api_version: Literal["onair.dev/v1alpha1"] = "onair.dev/v1alpha1"
    kind: Literal["Livestream"] = "Livestream"
    metadata: Optional[dict] = None
    spec: LivestreamSpec
    status: Optional[LivestreamStatus] = None
