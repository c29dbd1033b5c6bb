"""Call settings: the shape shared by ``CallType.spec.settings``, ``Livestream.spec.settingsOverride``
and ``Livestream.status.effectiveSettings``.

Every field is optional on the wire so an override can name any subset; the effective value
is resolved in code (``onair.render.effective``): built-in defaults, then the CallType, then
the Livestream's override. No schema defaults: a defaulted field would appear in the stored
object and GitOps tools would report drift against the user's YAML.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .base import ApiModel
from .webhooks import WebhookEndpoint

ProcessMode = Literal["auto-on", "available", "disabled"]
IngestProtocol = Literal["rtmp", "srt", "whip"]
Quality = Literal["2160p", "1440p", "1080p", "720p", "480p", "360p", "240p", "144p"]
RecordType = Literal["origin", "transcoded"]


class BackstageSettings(ApiModel):
    enabled: Optional[bool] = Field(
        None,
        description=(
            "Create streams in backstage: only members whose role grants join-backstage can watch "
            "until the stream goes live. Default true."
        ),
    )
    join_ahead_time_seconds: Optional[int] = Field(
        None,
        ge=0,
        le=86400,
        description=(
            "Open playback to everyone this many seconds before spec.startsAt, even while still in "
            "backstage. 0 (default) means viewers join only when the stream goes live."
        ),
    )


class IngestSettings(ApiModel):
    protocols: Optional[list[IngestProtocol]] = Field(
        None,
        min_length=1,
        max_length=3,
        description=(
            "Push protocols the ingest accepts. RTMPS is served whenever rtmp is on and a TLS "
            "certificate is configured. Default [rtmp, srt, whip]. Only one protocol can be active at a time."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    backup: Optional[bool] = Field(
        None,
        description=(
            "Run a second, independent ingest (backup push URLs) and fail over to it when the main "
            "input stops or freezes. Default false."
        ),
    )
    srt_latency_ms: Optional[int] = Field(
        None,
        ge=20,
        le=8000,
        description=("SRT receiver latency in milliseconds (400–2000 suits most networks). Default 2000."),
    )


class HlsSettings(ApiModel):
    quality_tracks: Optional[list[Quality]] = Field(
        None,
        min_length=1,
        max_length=8,
        description=(
            "ABR ladder, e.g. [1080p, 720p, 480p, 360p]. Rungs above the source resolution are skipped "
            "(never upscaled). Default [1080p, 720p, 480p, 360p]."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    source_passthrough: Optional[bool] = Field(
        None, description=("Add the source as an extra rung without re-encoding. Default false.")
    )


class OutputSettings(ApiModel):
    hls_cmaf: Optional[bool] = Field(None, description="HLS with CMAF (fMP4) segments. Default true.")
    hls_mpegts: Optional[bool] = Field(None, description="Legacy HLS with MPEG-TS segments. Default true.")
    dash: Optional[bool] = Field(None, description="MPEG-DASH. Default true.")
    webrtc: Optional[bool] = Field(
        None,
        description=(
            "WebRTC playback (WHEP, status.playback.whep; the player page's ?format=whep), sub-second latency: one "
            "more rendition encoded per stream (baseline H.264 without B-frames, Opus) whose packets are forwarded to "
            "every viewer, and the transcoder's pod takes WebRTC media on UDP. Default false."
        ),
    )


class BroadcastingSettings(ApiModel):
    mode: Optional[ProcessMode] = Field(
        None,
        description=(
            "auto-on: HLS/DASH broadcasting starts when the stream goes live; available: starts only "
            "when spec.goLive.startHls or spec.broadcasting asks; disabled: never. Unless disabled, the "
            "outputs are also produced in backstage for members with join-backstage to preview (viewers never "
            "get them) and for a transcoded recording. Default auto-on."
        ),
    )
    hls: Optional[HlsSettings] = None
    outputs: Optional[OutputSettings] = None
    low_latency: Optional[bool] = Field(
        None,
        description=(
            "Low-latency tier: LL-HLS (partial segments, blocking playlist reload, delta updates) on the CMAF "
            "HLS output, segments of at most 1 s without B-frames, chunked DASH; the player page plays it with "
            "hls.js lowLatencyMode. Plain HLS clients play the same playlists. Default false."
        ),
    )
    part_duration_ms: Optional[int] = Field(
        None,
        ge=100,
        le=1000,
        description=(
            "LL-HLS part target in milliseconds (with lowLatency), rounded to whole frames dividing the "
            "keyframe interval. Default 200."
        ),
    )
    segment_duration_seconds: Optional[int] = Field(
        None, ge=1, le=10, description=("Target media segment duration. Default 2.")
    )
    zero_latency_encoding: Optional[bool] = Field(
        None,
        description=(
            "Encode the ladder with x264's zerolatency tune (no B-frames, no lookahead) in the standard tier too: "
            "each HLS/DASH segment is ready about 0.4 s sooner, which every viewer gets as latency, and x264 needs "
            "about 40% less CPU, at the cost of some picture quality at the same bitrates (0.5–1 dB of SSIM on "
            "detailed moving pictures, bench/encoder_tune.py). The low-latency tier always encodes so. Default false."
        ),
    )


class DvrSettings(ApiModel):
    enabled: Optional[bool] = Field(None, description="Keep a rewindable window of the live stream. Default true.")
    duration_seconds: Optional[int] = Field(
        None, ge=30, le=14400, description=("DVR window in seconds, 30–14400 (4 h). Default 3600.")
    )


MAX_ORIGIN_REPLICAS = 10


class OriginSettings(ApiModel):
    replicas: Optional[int] = Field(
        None,
        ge=1,
        le=MAX_ORIGIN_REPLICAS,
        description=(
            "Origin pods behind the playback Service, 1–10. Default 1. With more, each keeps its own DVR volume "
            "and serves the same playlists and parts (the transcoder uploads to every one; a replica that starts "
            "copies a peer's DVR first), so a crashed pod or a rolling update is no outage for viewers. Changing "
            "between 1 and more replaces the origin (a Deployment with one volume, or a StatefulSet with one per "
            "pod): the DVR starts afresh, so choose before going live."
        ),
    )


S3_ENDPOINT_PATTERN = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
S3_BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# Keys stay within the characters S3 calls safe, so a URL or a shell never needs to quote them.
S3_PREFIX_PATTERN = r"^/?[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# Where players read the bucket: no query or fragment (an object key is appended to it).
S3_PUBLIC_BASE_URL_PATTERN = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
DEFAULT_S3_REGION = "us-east-1"
# The keys of the Secret named by ``S3Storage.credentials_secret``.
S3_ACCESS_KEY_ID = "accessKeyId"
S3_SECRET_ACCESS_KEY = "secretAccessKey"


class S3Storage(ApiModel):
    """An S3-compatible bucket every finished recording part (and its JSON sidecar) is uploaded to.

    Every field is optional on the wire like the rest of the settings, so a CallType can name the
    endpoint and bucket and a Livestream only its prefix; what is missing once merged is reported
    as ``InvalidRecordingStorage`` on the Livestream (``onair.render.resolve``).
    """

    endpoint: Optional[str] = Field(
        None,
        max_length=2048,
        pattern=S3_ENDPOINT_PATTERN,
        description=(
            "S3 API endpoint, e.g. https://s3.eu-central-1.amazonaws.com or http://minio.storage:9000. Required."
        ),
    )
    bucket: Optional[str] = Field(
        None,
        min_length=3,
        max_length=63,
        pattern=S3_BUCKET_PATTERN,
        description=("Existing bucket the recordings go to (onair never creates one). Required."),
    )
    prefix: Optional[str] = Field(
        None,
        max_length=512,
        pattern=S3_PREFIX_PATTERN,
        description=(
            "Key prefix, e.g. recordings/prod (slashes around it are ignored). Objects are <prefix>/<namespace>/<livestream>/<session>/<file>. "
            "Default: none."
        ),
    )
    region: Optional[str] = Field(
        None,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description=(f"Region the requests are signed for. Default {DEFAULT_S3_REGION}."),
    )
    force_path_style: Optional[bool] = Field(
        None,
        description=(
            "Address the bucket as <endpoint>/<bucket> instead of <bucket>.<endpoint> (MinIO, SeaweedFS, Ceph "
            "and most self-hosted stores need true). Default false."
        ),
    )
    credentials_secret: Optional[str] = Field(
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            f"Secret in the Livestream's namespace with the keys {S3_ACCESS_KEY_ID} and {S3_SECRET_ACCESS_KEY}, mounted "
            "into the recorder as files (a rotated Secret is used without a restart). The key needs s3:PutObject and "
            "s3:GetObject (each upload is checked after it completes), and s3:ListBucketMultipartUploads and "
            "s3:AbortMultipartUpload to abort what a killed recorder left, s3:ListBucket and s3:DeleteObject to delete "
            "a Recording's objects when the Recording is deleted. Required."
        ),
    )
    public_base_url: Optional[str] = Field(
        None,
        max_length=2048,
        pattern=S3_PUBLIC_BASE_URL_PATTERN,
        description=(
            "HTTP(S) address where players read this bucket's objects by key: the bucket's public or website endpoint, "
            "or a CDN in front of it (a Gcore CDN resource, CloudFront, ...), e.g. https://cdn.example.org. A "
            "Recording's playback URL is <publicBaseUrl>/<object key> (the key includes the prefix); the address must "
            "answer GET with byte ranges and CORS for the player's origin. Unset: the Recording names its objects but no "
            "HTTP URL, and status.playback says why."
        ),
    )
    keep_local_copy: Optional[bool] = Field(
        None,
        description=(
            "Keep each part on the recordings volume after its upload is confirmed. Default false: a part is "
            "deleted once the store holds it with the same size and checksum (never before); the small JSON "
            "sidecars always stay, so the recorder keeps listing the recordings."
        ),
    )


class RecordingStorage(ApiModel):
    persistent_volume_claim: Optional[str] = Field(
        None,
        max_length=253,
        description=(
            "Existing PVC (same namespace) to write recordings to. When unset the operator creates "
            "one per Livestream that outlives it (not owned, so deleting the Livestream keeps recordings)."
        ),
    )
    size: Optional[str] = Field(
        None,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$",
        description="Size of the created PVC. Default 20Gi.",
    )
    storage_class_name: Optional[str] = Field(None, max_length=253, description="StorageClass of the created PVC.")
    s3: Optional[S3Storage] = Field(
        None,
        description=(
            "Also upload every finished part to this S3-compatible bucket, as soon as it is finalized (multipart, "
            "retried with backoff until it succeeds); the volume above is the buffer. GetStream's "
            "recording_storage_name: set it per CallType or per Livestream. The RecordingsUploaded condition "
            "says whether uploads work."
        ),
    )


class RecordingSettings(ApiModel):
    mode: Optional[ProcessMode] = Field(
        None,
        description=(
            "auto-on: record from backstage onward; available: record when spec.goLive.startRecording or "
            "spec.recording asks; disabled: never. Default available."
        ),
    )
    type: Optional[RecordType] = Field(
        None,
        description=(
            "origin: record the pushed source as is; transcoded: record the top transcoded rung. Default origin."
        ),
    )
    split_seconds: Optional[int] = Field(
        None, ge=60, le=86400, description=("Split long broadcasts into parts of this length. Default 14400 (4 h).")
    )
    storage: Optional[RecordingStorage] = None


class ScreenshotSettings(ApiModel):
    enabled: Optional[bool] = Field(None, description="Publish a JPEG screenshot while broadcasting. Default true.")
    interval_seconds: Optional[int] = Field(None, ge=1, le=3600, description="Default 10.")
    width: Optional[int] = Field(None, ge=64, le=3840, description="Width in pixels. Default 1080.")


class CallSettings(ApiModel):
    backstage: Optional[BackstageSettings] = None
    ingest: Optional[IngestSettings] = None
    broadcasting: Optional[BroadcastingSettings] = None
    dvr: Optional[DvrSettings] = None
    origin: Optional[OriginSettings] = None
    recording: Optional[RecordingSettings] = None
    screenshots: Optional[ScreenshotSettings] = None
    webhooks: Optional[list[WebhookEndpoint]] = Field(
        None,
        max_length=8,
        description=(
            "Endpoints notified of the stream's events (went live, ended, broadcasting and recording "
            "started/stopped/failed, a recording ready): signed CloudEvents, retried until delivered. "
            "A Livestream's list replaces its CallType's."
        ),
    )


# The values used where neither the CallType nor the override says anything.
DEFAULT_SETTINGS = CallSettings(
    backstage=BackstageSettings(enabled=True, join_ahead_time_seconds=0),
    ingest=IngestSettings(protocols=["rtmp", "srt", "whip"], backup=False, srt_latency_ms=2000),
    broadcasting=BroadcastingSettings(
        mode="auto-on",
        hls=HlsSettings(quality_tracks=["1080p", "720p", "480p", "360p"], source_passthrough=False),
        outputs=OutputSettings(hls_cmaf=True, hls_mpegts=True, dash=True, webrtc=False),
        low_latency=False,
        part_duration_ms=200,
        segment_duration_seconds=2,
        zero_latency_encoding=False,
    ),
    dvr=DvrSettings(enabled=True, duration_seconds=3600),
    origin=OriginSettings(replicas=1),
    recording=RecordingSettings(
        mode="available", type="origin", split_seconds=14400, storage=RecordingStorage(size="20Gi")
    ),
    screenshots=ScreenshotSettings(enabled=True, interval_seconds=10, width=1080),
)
