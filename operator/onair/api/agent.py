"""The contract between the control plane and the media agents (`onair agent <role>`).

Three things cross that boundary, and this module is their only definition:

* ``*Config``: the static configuration of one role. The operator renders it into a ConfigMap
  (``config.json``) mounted at ``/etc/onair/config.json``; tests build it directly. Secrets are
  never in it: only the *paths* of files mounted from the Livestream's Secret.
* ``Desired``: the dynamic desired state (phase, broadcasting, recording) that the operator
  PUTs to ``/desired`` on every status poll. Level-based and idempotent: the agent converges on
  the last one it got, so a restarted agent or operator loses nothing.
* ``*Status``: what ``GET /status`` returns. The operator turns it into Livestream status
  (``live``, ``backupLive``, ``transcodingSpeed``, ``recordingDurationSeconds``).

Every role also serves ``GET /metrics`` (Prometheus text) and ``GET /healthz``.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Literal, Optional, Sequence

from pydantic import Field, field_validator

from .base import ApiModel

Slot = Literal["main", "backup"]
Phase = Literal["backstage", "live", "ended"]
Protocol = Literal["rtmp", "rtmps", "srt", "whip"]


# ----------------------------------------------------------------------------- configs
AGENT_TOKEN_DESCRIPTION = (
    "the livestream's agent token: every agent API call but /healthz, /readyz and /metrics must carry "
    "Authorization: Bearer <it>; a named file that is missing or empty locks the API; unset: open (local runs)"
)


class Rung(ApiModel):
    """One rendition of the ABR ladder (computed by ``onair.render.ladder``)."""

    name: str = Field(description="e.g. 720p, or 'source' for the passthrough rung")
    width: int
    height: int
    video_bitrate_kbps: int
    audio_bitrate_kbps: int = 128
    fps: float | None = None
    passthrough: bool = False


class IngestConfig(ApiModel):
    role: Literal["ingest"] = "ingest"
    livestream: str = Field(description="namespace/name, for logs and metrics labels")
    slot: Slot = "main"
    protocols: list[Protocol] = ["rtmp", "rtmps", "srt", "whip"]
    listen_host: str = "0.0.0.0"
    agent_port: int = 8080
    agent_token_file: Optional[str] = Field(None, description=AGENT_TOKEN_DESCRIPTION)
    rtmp_port: int = 1935
    rtmps_port: int = 1936
    srt_port: int = 9998
    whip_port: int = 8443
    srt_latency_ms: int = 2000
    stream_key_file: str = "/etc/onair/secret/streamKey"
    srt_passphrase_file: str = "/etc/onair/secret/srtPassphrase"
    whip_token_file: str = "/etc/onair/secret/whipToken"
    publish_token_secret_file: Optional[str] = Field(
        None,
        description=(
            "the livestream's playback secret, which also signs members' personal publish tokens (scope publish); "
            "unset or missing: only the stream key, SRT passphrase and WHIP token publish"
        ),
    )
    read_token_file: Optional[str] = Field(
        None,
        description="internal readers (transcoder, recorder) must play with ?token=<this file's token>; "
        "unset: plays are not checked (local runs and tests without a token)",
    )
    tls_cert_file: Optional[str] = None
    tls_key_file: Optional[str] = None
    work_dir: str = "/var/lib/onair/ingest"
    active: bool = Field(True, description="Gcore's on/off switch: when false every push is refused")
    idle_publisher_timeout_seconds: float = Field(
        3.0, gt=0, description="a publisher that sends nothing for this long is dropped (frozen encoder)"
    )
    whip_ice_addresses: Optional[list[str]] = Field(
        None,
        description="local addresses WebRTC gathers host candidates on; default every non-loopback "
        "interface (tests set 127.0.0.1)",
    )
    whip_ice_servers: list[str] = Field(
        default_factory=list,
        description="STUN/TURN URLs the ingest's own WebRTC peer uses, e.g. "
        "turn:onair-turn.onair-system.svc:3478?transport=udp",
    )
    whip_client_ice_servers: Optional[list[str]] = Field(
        None,
        description="STUN/TURN URLs announced to WHIP clients in the answer's Link headers (the addresses "
        "encoders outside the cluster reach); null: whip_ice_servers",
    )
    whip_turn_secret_file: Optional[str] = Field(
        None,
        description="the TURN server's shared secret (coturn static-auth-secret): every WHIP session gets "
        "time-limited TURN credentials minted from it; unset: TURN URLs carry no credentials",
    )
    whip_turn_credential_ttl_seconds: int = Field(
        86400,
        ge=60,
        le=7 * 86400,
        description="how long a session's TURN credentials stay valid (the whole "
        "show: the TURN server checks them on every allocation refresh)",
    )


class TranscoderConfig(ApiModel):
    role: Literal["transcoder"] = "transcoder"
    livestream: str
    agent_port: int = 8080
    agent_token_file: Optional[str] = Field(None, description=AGENT_TOKEN_DESCRIPTION)
    main_url: Optional[str] = Field(None, description="RTMP URL to read the main ingest from")
    backup_url: Optional[str] = None
    read_token_file: Optional[str] = Field(
        None, description="the ingest's read token, appended as ?token= to mainUrl and backupUrl at run time"
    )
    pull_uris: list[str] = Field(default_factory=list, description="pull mode: tried round-robin")
    ladder: list[Rung]
    hls_cmaf: bool = True
    hls_mpegts: bool = True
    dash: bool = True
    low_latency: bool = Field(
        False, description="LL-HLS parts in the CMAF output (segments of at most 1 s) and chunked DASH"
    )
    part_seconds: float = Field(
        0.2, ge=0.05, le=1.0, description="LL-HLS part target; rounded to whole frames dividing the GOP"
    )
    segment_seconds: float = 2.0
    zero_latency_encoding: bool = Field(
        False, description="x264's zerolatency tune (no B-frames, no lookahead) without lowLatency too"
    )
    screenshot_interval_seconds: int = 10
    screenshot_width: int = 1080
    output_dir: Optional[str] = Field(None, description="write outputs here (shared volume / local tests)")
    output_url: Optional[str] = Field(None, description="or HTTP PUT them to the origin's ingest URL")
    output_urls: Optional[list[str]] = Field(
        None,
        description=(
            "instead of outputUrl, HTTP PUT every file to each of these (one per origin replica): every replica gets "
            "every upload, in the same order, so all index the same segments under the same numbers"
        ),
    )
    output_token_file: Optional[str] = None
    work_dir: str = "/var/lib/onair/transcoder"
    listen_host: str = "0.0.0.0"
    preset: str = Field("veryfast", description="x264 preset of every encoded rung")
    playlist_segments: int = Field(8, ge=3, le=30, description="live HLS window; the origin keeps the DVR")
    freeze_seconds: float = Field(1.0, gt=0, description="a source silent this long is failed over")
    return_seconds: float = Field(3.0, ge=0, description="main must be healthy this long before it takes over again")
    whep: bool = Field(
        False,
        description=(
            "WHEP playback: the encoder also makes one WebRTC rendition (baseline H.264 without B-frames, Opus) whose "
            "packets go to every viewer as they are; the agent API answers POST /whep and DELETE /whep/{id} (the "
            "origin's /whep proxies them for the viewers it lets in)"
        ),
    )
    whep_ice_addresses: Optional[list[str]] = Field(
        None,
        description="local addresses WebRTC gathers host candidates on; default every non-loopback "
        "interface (tests set 127.0.0.1)",
    )
    whep_ice_servers: list[str] = Field(
        default_factory=list, description="STUN/TURN URLs the transcoder's own WebRTC peers use"
    )
    whep_client_ice_servers: Optional[list[str]] = Field(
        None,
        description="STUN/TURN URLs announced to WHEP viewers in the answer's Link headers; null: whep_ice_servers",
    )
    whep_turn_secret_file: Optional[str] = Field(
        None, description="the TURN server's shared secret: every WHEP session gets time-limited TURN credentials"
    )
    whep_turn_credential_ttl_seconds: int = Field(86400, ge=60, le=7 * 86400)
    whep_max_viewers: int = Field(500, ge=1, description="WHEP sessions at once; more get 503 (play HLS/DASH)")


def ip_networks(entries: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses or CIDRs (``10.42.0.0/16``, ``192.0.2.7``, ``2001:db8::/32``); ValueError says which
    entry is not one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or CIDR (e.g. 10.42.0.0/16, 192.0.2.7 or 2001:db8::/32)"
            ) from None
    return tuple(networks)


# On SIGTERM an origin answers /readyz 503 and serves on this long before it stops listening: the
# time for its Service's endpoints and every kube-proxy (or another load balancer) to drop it, so
# no viewer's request meets a closed port during a rolling update or a scale-down.
ORIGIN_DRAIN_SECONDS = 5.0
# Then the requests still in flight (held LL-HLS reloads, a DVR rewind being sent) get this long
# to finish before their connections are closed. The pod's grace period covers both.
ORIGIN_FINISH_SECONDS = 10.0


class OriginConfig(ApiModel):
    role: Literal["origin"] = "origin"
    livestream: str
    listen_host: str = "0.0.0.0"
    agent_port: int = 8080
    agent_token_file: Optional[str] = Field(None, description=AGENT_TOKEN_DESCRIPTION)
    http_port: int = 8081
    upload_port: int = Field(8082, description="the transcoder's uploads (PUT/DELETE /upload/...); never viewers")
    data_dir: str = "/var/lib/onair/origin"
    dvr_enabled: bool = True
    dvr_window_seconds: int = Field(3600, ge=30, le=14400)
    playback_secret_file: str = "/etc/onair/secret/playbackSecret"
    upload_token_file: Optional[str] = None
    read_token_file: Optional[str] = Field(
        None,
        description="Authorization: Bearer <this file's token> reads playlists and segments in any phase "
        "(in-cluster readers such as the recorder)",
    )
    projection: Literal["regular", "vr360", "vr180", "vr360tb"] = "regular"
    low_latency: bool = Field(
        False,
        description="the player page uses hls.js lowLatencyMode and dash.js low-latency "
        "settings; LL-DASH MPDs (availabilityTimeOffset, ServiceDescription)",
    )
    recorder_url: Optional[str] = Field(
        None,
        description=(
            "the recorder's agent URL (http://<livestream>-recorder:8080): the finished recordings on its volume are "
            "served to viewers at /recordings/<part>.m3u8 and <part>.mp4, read from its GET /vod/<file> with the agent "
            "token, under the same access rules as the live stream; null: no recorder"
        ),
    )
    whep_url: Optional[str] = Field(
        None,
        description=(
            "the transcoder's WHEP endpoint on its agent API (http://<livestream>-transcoder:8080/whep): viewers POST "
            "their offer to the origin's /whep, which checks playback access as for HLS and passes it on with the "
            "agent token; null: WHEP is off (404)"
        ),
    )
    part_seconds: float = Field(
        0.2,
        ge=0.05,
        le=1.0,
        description="LL-HLS part / LL-DASH chunk duration (the transcoder's partSeconds), with lowLatency",
    )
    cors_origins: list[str] = ["*"]
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "addresses or CIDRs of the proxies viewers come through (ingress controller, gateway, CDN): a connection "
            "from one is held only to the public port's total cap, not to the per-address cap (a quarter of it) "
            "that keeps one client from taking the port"
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _are_networks(cls, value: list[str]) -> list[str]:
        ip_networks(value)
        return value

    peer_upload_urls: Optional[list[str]] = Field(
        None,
        description=(
            "the upload URLs of the other replicas of this origin (http://<pod>.<livestream>-origin-peers:8082/upload): "
            "on start, and when the transcoder says it missed uploads, this replica copies a ready peer's DVR index and "
            "files so its playlists number segments as the peers do; this replica's own URL (its host name is the pod's) is skipped; "
            "null: a single origin"
        ),
    )
    max_upload_bytes: int = Field(
        64 * 1024 * 1024, ge=1024 * 1024, description="largest segment/screenshot the transcoder may PUT (413 above)"
    )
    drain_seconds: float = Field(
        ORIGIN_DRAIN_SECONDS,
        ge=0,
        le=60,
        description=(
            "after SIGTERM: /readyz answers 503 and viewers are served on (each answer closing its connection, so "
            "keep-alive clients reconnect to another replica) this long, while load balancers drop this origin; "
            "then the port closes"
        ),
    )


class S3UploadConfig(ApiModel):
    """Where the recorder uploads finished parts and sidecars (``onair.agent.recorder.upload``)."""

    endpoint: str = Field(description="S3 API endpoint URL, e.g. https://s3.eu-central-1.amazonaws.com")
    bucket: str
    prefix: str = Field("", description="key prefix; keys are <prefix>/<namespace>/<name>/<session>/<file>")
    region: str = "us-east-1"
    force_path_style: bool = Field(False, description="<endpoint>/<bucket>/<key> instead of <bucket>.<host>")
    access_key_id_file: str = Field(description="file holding the access key id, read at every attempt")
    secret_access_key_file: str = Field(description="file holding the secret access key, read at every attempt")
    keep_local_copy: bool = Field(False, description="keep a part on the volume once its upload is confirmed")
    part_size_bytes: int = Field(
        16 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        le=5 * 1024 * 1024 * 1024,
        description="size of each multipart upload part (the last may be smaller)",
    )
    request_timeout_seconds: float = Field(
        30, gt=0, description="connect and read timeout of every request: bounds each attempt"
    )
    retry_max_seconds: float = Field(60, gt=0, description="ceiling of the backoff between failed attempts")


class RecorderConfig(ApiModel):
    role: Literal["recorder"] = "recorder"
    livestream: str
    listen_host: str = "0.0.0.0"
    agent_port: int = 8080
    agent_token_file: Optional[str] = Field(None, description=AGENT_TOKEN_DESCRIPTION)
    source_url: str = Field(description="RTMP ingest (recordType origin) or transcoded HLS URL")
    fallback_source_urls: list[str] = Field(
        default_factory=list,
        description="tried in turn when the source in use drops (other pull URIs): the "
        "session goes on from whichever delivers",
    )
    backup_source_url: Optional[str] = Field(
        None,
        description=("the backup ingest's read URL: tried after the fallbacks while Desired.backup is true or unset"),
    )
    record_type: Literal["origin", "transcoded"] = "origin"
    read_token_file: Optional[str] = Field(
        None,
        description="the livestream's internal read token: appended as ?token= to an RTMP source, sent as "
        "Authorization: Bearer to an HTTP(S) one",
    )
    output_dir: str = "/recordings"
    split_seconds: int = Field(4 * 3600, gt=0)
    finalize_after_seconds: float = Field(10, ge=0, description="wait this long for a dropped stream before finalizing")
    stall_timeout_seconds: float = Field(8, gt=0, description="no media for this long = the source dropped")
    retry_max_seconds: float = Field(5, gt=0, description="ceiling of the retry backoff while the source is not live")
    min_free_bytes: int = Field(64 * 1024 * 1024, ge=0, description="pause recording below this much free space")
    s3: Optional[S3UploadConfig] = Field(
        None, description="upload finished parts and sidecars here; null: keep them on the volume only"
    )


# ----------------------------------------------------------------------------- desired state
class PublishMember(ApiModel):
    """One member of the Livestream as the ingest judges their personal publish token."""

    user_id: str
    may_publish: bool = Field(description="the member's role grants send-audio and send-video in the CallType")
    role: str = Field(description="for the refusal message")
    revoke_tokens_issued_before: Optional[datetime] = Field(
        None, description="personal publish tokens issued (iat) before this are refused as revoked"
    )


class Desired(ApiModel):
    """PUT /desired body. Missing fields keep their current value."""

    phase: Phase = "backstage"
    broadcasting: bool = Field(
        False,
        description=(
            "Transcoder: produce the outputs (public broadcasting, the backstage preview, a transcoded "
            "recording's source)."
        ),
    )
    public_broadcasting: Optional[bool] = Field(
        None,
        description=(
            "GetStream's HLS broadcast: outputs the origin indexes while this and viewersAllowed are both on "
            "are for viewers; the rest only for token holders and in-cluster readers. Unset: every output "
            "is for viewers while they are allowed."
        ),
    )
    recording: bool = False
    active: bool = True
    backup: Optional[bool] = Field(
        None,
        description=(
            "The backup ingest exists (push mode with ingest.backup). Transcoder: read backupUrl only while "
            "true; recorder: fall back to backupSourceUrl only while true. Unset: use them whenever configured. "
            "Lets the backup come and go without a restart."
        ),
    )
    viewers_allowed: Optional[bool] = Field(
        None,
        description=(
            "Playback open to everyone: live, backstage disabled, or the join-ahead window reached. "
            "When false the origin requires a playback token; unset means 'unless phase is backstage'."
        ),
    )
    members: Optional[list[PublishMember]] = Field(
        None,
        description=(
            "Ingest: the Livestream's members now, against which personal publish tokens are checked on every "
            "publish (a member removed, a grant or tokens revoked: refused at once, and the live publisher "
            "holding such a token is dropped). Unset: not known yet (an agent before the operator's first PUT), "
            "personal tokens are refused."
        ),
    )
    generation: int = 0


# ----------------------------------------------------------------------------- statuses
class VideoInfo(ApiModel):
    codec: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None


class AudioInfo(ApiModel):
    codec: Optional[str] = None
    channels: Optional[int] = None
    sample_rate: Optional[int] = None


class IngestRefusal(ApiModel):
    """Publishes refused (or dropped) for one reason over one protocol since the agent started."""

    reason: str = Field(description="a code of onair.api.refusals, e.g. wrong_key, no_video")
    protocol: Optional[Protocol] = None
    count: int = Field(ge=1, description="refusals of this reason and protocol since the agent started")
    first_at: datetime
    last_at: datetime
    last_address: Optional[str] = Field(None, description="the publisher's address at the last refusal")
    message: str = Field(description="what was wrong at the last refusal, in words; never a credential")


class IngestStatus(ApiModel):
    role: Literal["ingest"] = "ingest"
    slot: Slot
    receiving: bool
    since: Optional[datetime] = None
    protocol: Optional[Protocol] = None
    bitrate_kbps: Optional[float] = None
    video: Optional[VideoInfo] = None
    audio: Optional[AudioInfo] = None
    publisher: Optional[str] = Field(
        None,
        description=(
            "userId of the member whose personal publish token the current publisher used; null for the stream "
            "key, SRT passphrase or WHIP token"
        ),
    )
    refusals: list[IngestRefusal] = Field(
        default_factory=list,
        description=(
            "refusals by reason and protocol, the most recent first (at most 16 kinds): the operator turns new "
            "ones into Warning Events"
        ),
    )


class TranscoderStatus(ApiModel):
    role: Literal["transcoder"] = "transcoder"
    active_source: Optional[Literal["main", "backup", "pull"]] = None
    speed: Optional[float] = Field(None, description="ffmpeg speed=; ~1.0 is real time")
    qualities: list[str] = Field(default_factory=list)
    last_segment_at: Optional[datetime] = None
    broadcasting: bool = Field(
        False,
        description=(
            "outputs are being produced now: the running encoder published a segment within the last "
            "max(10 s, 3 segments)"
        ),
    )
    run_id: Optional[str] = Field(None, description="encoder run; part of every output file name")
    source_switches: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "switches viewers saw, by the source switched to (main, backup), since this agent started: "
            "how a failover and return between two status polls is still noticed"
        ),
    )
    error: Optional[str] = Field(
        None,
        description=(
            "why outputs are not being produced although an encoder should run: how its last process ended "
            "(exit code and last message); cleared once a segment is published"
        ),
    )


class StoredObject(ApiModel):
    """Where a finished part lives in object storage, once its upload is confirmed."""

    url: str = Field(description="s3://<bucket>/<key>")
    endpoint: str = Field(description="the S3 endpoint it was uploaded to, e.g. https://s3.example.org")
    etag: str = Field(description="the store's ETag of the complete object")
    uploaded_at: datetime
    playlist: Optional[str] = Field(
        None,
        description=(
            "s3://<bucket>/<key> of the part's HLS VOD playlist (<part>.m3u8 next to it, naming the part by a relative "
            "URI: it plays wherever both are readable, e.g. behind a CDN); null when the part is no fragmented MP4"
        ),
    )


class RecordedPart(ApiModel):
    file: str = Field(description="part file name in the recordings volume")
    bytes: int = Field(ge=0)
    duration_seconds: Optional[float] = Field(
        None, description="what ffprobe reads from the file; null when unreadable"
    )
    object: Optional[StoredObject] = Field(
        None,
        description=("the part in object storage once its upload is confirmed; null while it is only on the volume"),
    )
    upload_error: Optional[str] = Field(
        None, description=("why the last upload attempt failed (the recorder keeps retrying); null when none failed")
    )


class Recording(ApiModel):
    """One finished recording session, as its sidecar on the recordings volume describes it."""

    session: str = Field(description="<namespace>_<name>_<start>: names its parts and its sidecar (<session>.json)")
    started_at: datetime
    ended_at: datetime
    duration_seconds: float = Field(description="recorded seconds, all parts")
    end_reason: str = Field(description="recording stopped, source gone for <n>s, agent stopped, or recovered: ...")
    recovered: bool = Field(False, description="finalized by a later recorder: the one recording it was killed")
    record_type: Optional[Literal["origin", "transcoded"]] = Field(
        None,
        description=(
            "what was recorded (the sidecar's recordType): origin, the source as pushed; transcoded, the top rendition"
        ),
    )
    parts: list[RecordedPart] = Field(default_factory=list)


UploadErrorKind = Literal["credentials", "bucket", "unreachable", "rejected", "local"]


class UploadStatus(ApiModel):
    """The recorder's uploads to object storage; present only when ``RecorderConfig.s3`` is set."""

    target: str = Field(description="s3://<bucket>/<prefix>: where recordings go")
    endpoint: str
    pending: int = Field(
        ge=0,
        description=(
            "finished files (parts, sidecars) on the volume whose upload is not confirmed yet; the part being "
            "written is not counted"
        ),
    )
    uploading: Optional[str] = Field(None, description="the file being uploaded now")
    error: Optional[str] = Field(
        None,
        description=("why the last attempt failed, worded the same for the same cause; null once an upload succeeds"),
    )
    error_kind: Optional[UploadErrorKind] = None
    failing_since: Optional[datetime] = Field(None, description="first failure of the current run of failures")
    next_attempt_at: Optional[datetime] = Field(None, description="when the failed upload is retried")


class RecorderStatus(ApiModel):
    role: Literal["recorder"] = "recorder"
    recording: bool = Field(description="media is being written right now")
    duration_seconds: float = Field(0.0, description="recorded seconds of the current session; 0 when none is open")
    files: list[str] = Field(default_factory=list, description="part files of this livestream in outputDir, sorted")
    state: Optional[Literal["idle", "waiting", "recording", "reconnecting", "disk_full", "error"]] = None
    started_at: Optional[datetime] = Field(None, description="first media of the current session")
    error: Optional[str] = Field(None, description="what keeps the recorder from recording (disk full, volume missing)")
    source_error: Optional[str] = Field(
        None,
        description=(
            "why the last attempt to read the source gave no media (e.g. 'playlist answered HTTP 404'), while "
            "waiting or reconnecting; null once media flows or recording is not desired"
        ),
    )
    recordings: list[Recording] = Field(
        default_factory=list,
        description=(
            "finished sessions of this livestream on the volume (their sidecars), oldest first, at most the latest 50"
        ),
    )
    upload: Optional[UploadStatus] = Field(
        None, description="uploads to object storage; null without RecorderConfig.s3"
    )


class OriginStatus(ApiModel):
    role: Literal["origin"] = "origin"
    dvr_window_seconds: int = Field(description="configured DVR window; 0 when DVR is off")
    playlists: list[str] = Field(default_factory=list)
    dvr_available_seconds: Optional[float] = Field(
        None, description="rewind depth every rendition offers right now (grows to the window, 0 after a clear)"
    )
    last_upload_at: Optional[datetime] = None
