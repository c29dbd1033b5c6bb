"""Each agent's static config (``onair.api.agent``), as its ConfigMap carries it, and the files and
directories the configs name inside the pod (mounted by ``onair.render.deployments``)."""

from __future__ import annotations

import json
from typing import Optional

from pydantic import BaseModel

from onair import endpoints, roles
from onair.api.agent import IngestConfig, OriginConfig, RecorderConfig, Rung, S3UploadConfig, TranscoderConfig
from onair.api.livestream import LivestreamSpec
from onair.api.settings import DEFAULT_S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, CallSettings, RecordingStorage
from onair.api.operator_config import OperatorConfig
from onair.render import credentials as creds_mod
from onair.render import ladder
from onair.render.child_names import origin_replica_host, port_number, service_host
from onair.render.effective import origin_replicas, sections


CONFIG_KEY = "config.json"
TLS_DIR = "/etc/onair/tls"
# The TURN server's shared secret, copied from the operator's ONAIR_WHIP_TURN_SECRET_FILE into
# <ls>-turn (a pod can only mount Secrets of its own namespace); the ingest mints per-session
# TURN credentials from it.
TURN_DIR = "/etc/onair/turn"
TURN_SECRET_KEY = "turnSecret"
RECORDINGS_DIR = "/recordings"
# The recording storage's S3 credentials (recording.storage.s3.credentialsSecret), as files.
S3_SECRET_DIR = "/etc/onair/s3"


def ingest_tls(config: OperatorConfig) -> bool:
    return config.ingest_tls_secret is not None


def is_pull(spec: LivestreamSpec) -> bool:
    return spec.source is not None and spec.source.mode == "pull"


def secret_file(key: str) -> str:
    return f"{roles.SECRET_DIR}/{key}"


def render_ladder(effective: CallSettings) -> list[Rung]:
    """The configured ladder, sized for a nominal 16:9 source as tall as the tallest track.

    Nobody has published when this renders, so the real source size is unknown: a nominal source
    that fits every configured track keeps them all (a 1080p guess would silently drop 1440p and
    2160p). The transcoder fits the ladder to the source it receives (``ladder.fit_ladder``),
    which is where upscaling rungs are dropped.
    """
    hls = sections(effective).broadcasting.hls
    # Set in DEFAULT_SETTINGS, so set in effective settings (a merge cannot unset a value).
    assert hls is not None and hls.quality_tracks is not None
    tracks: list[str] = list(hls.quality_tracks)
    tallest = max(ladder.parse_track(t)[0] for t in tracks)
    if hls.source_passthrough:
        tracks.append(ladder.SOURCE)
    return ladder.build_ladder(tracks, ladder.even(tallest * 16 / 9), tallest)


def backup_read_url(name: str, namespace: str) -> str:
    return endpoints.ingest_read_url(service_host(name, namespace, "ingest-backup"), port_number(roles.INGEST, "rtmp"))


def _whep_settings(config: OperatorConfig) -> dict:
    """The transcoder's WHEP peers take the operator's ICE servers as the ingest's WHIP peer does: its own
    (``whipIngestIceServers``, else ``whipIceServers``), the viewers' in the answer (``whipIceServers``),
    TURN credentials minted per session from the same shared secret."""
    own = config.whip_ingest_ice_servers if config.whip_ingest_ice_servers is not None else config.whip_ice_servers
    return dict(
        whep=True,
        whep_ice_servers=list(own),
        whep_client_ice_servers=list(config.whip_ice_servers),
        whep_turn_secret_file=f"{TURN_DIR}/{TURN_SECRET_KEY}" if config.whip_turn_secret_file else None,
        whep_turn_credential_ttl_seconds=config.whip_turn_credential_ttl_seconds,
    )


def render_agent_configs(
    name: str, namespace: str, spec: LivestreamSpec, effective: CallSettings, config: OperatorConfig
) -> dict[str, BaseModel]:
    ident = f"{namespace}/{name}"
    active = spec.active is not False
    pull_source = spec.source if is_pull(spec) else None
    pull = pull_source is not None
    settings = sections(effective)
    b = settings.broadcasting
    # Set in DEFAULT_SETTINGS, so set in effective settings (a merge cannot unset a value).
    assert (
        settings.ingest.protocols is not None
        and b.outputs is not None
        and b.part_duration_ms is not None
        and b.segment_duration_seconds is not None
    )
    out: dict[str, BaseModel] = {}
    if not pull:
        protocols: list[str] = []
        for proto in settings.ingest.protocols:
            protocols.append(proto)
            if proto == "rtmp" and ingest_tls(config):
                protocols.append("rtmps")
        tls_files = (
            {"tls_cert_file": f"{TLS_DIR}/tls.crt", "tls_key_file": f"{TLS_DIR}/tls.key"} if ingest_tls(config) else {}
        )
        whip = "whip" in protocols
        ingest_ice = (
            config.whip_ingest_ice_servers if config.whip_ingest_ice_servers is not None else config.whip_ice_servers
        )
        for slot in ("main", "backup") if settings.ingest.backup else ("main",):
            out["ingest" if slot == "main" else "ingest-backup"] = IngestConfig(
                livestream=ident,
                slot=slot,
                protocols=protocols,
                agent_port=roles.AGENT_PORT,
                rtmp_port=port_number(roles.INGEST, "rtmp"),
                rtmps_port=port_number(roles.INGEST, "rtmps"),
                srt_port=port_number(roles.INGEST, "srt"),
                whip_port=port_number(roles.INGEST, "whip"),
                srt_latency_ms=settings.ingest.srt_latency_ms,
                stream_key_file=secret_file(creds_mod.STREAM_KEY),
                srt_passphrase_file=secret_file(creds_mod.SRT_PASSPHRASE),
                whip_token_file=secret_file(creds_mod.WHIP_TOKEN),
                publish_token_secret_file=secret_file(creds_mod.PLAYBACK_SECRET),
                read_token_file=secret_file(creds_mod.READ_TOKEN),
                agent_token_file=secret_file(creds_mod.AGENT_TOKEN),
                active=active,
                whip_ice_servers=list(ingest_ice),
                whip_client_ice_servers=list(config.whip_ice_servers),
                whip_turn_secret_file=f"{TURN_DIR}/{TURN_SECRET_KEY}"
                if whip and config.whip_turn_secret_file
                else None,
                whip_turn_credential_ttl_seconds=config.whip_turn_credential_ttl_seconds,
                **tls_files,
            )

    ingest_port = port_number(roles.INGEST, "rtmp")
    origin_http = port_number(roles.ORIGIN, "http")
    origin_upload = port_number(roles.ORIGIN, "upload")
    origin_host = service_host(name, namespace, "origin")
    # Several origin replicas: every upload goes to each (the same numbering everywhere), and each
    # copies a peer's DVR when it starts (agent/origin/replicas.py). One: the Service, as always.
    replica_urls = origin_replica_upload_urls(name, namespace, origin_replicas(effective)) or None
    out["transcoder"] = TranscoderConfig(
        livestream=ident,
        agent_port=roles.AGENT_PORT,
        agent_token_file=secret_file(creds_mod.AGENT_TOKEN),
        main_url=None if pull else endpoints.ingest_read_url(service_host(name, namespace, "ingest"), ingest_port),
        # Always, in push mode: whether the backup ingest exists reaches the transcoder through
        # Desired.backup, so turning it on or off on a live stream restarts nothing.
        backup_url=None if pull else backup_read_url(name, namespace),
        # The URLs above carry no token (a ConfigMap is no place for it): the transcoder adds it.
        read_token_file=None if pull else secret_file(creds_mod.READ_TOKEN),
        pull_uris=list(pull_source.uris or []) if pull_source else [],
        ladder=render_ladder(effective),
        hls_cmaf=b.outputs.hls_cmaf,
        hls_mpegts=b.outputs.hls_mpegts,
        dash=b.outputs.dash,
        low_latency=b.low_latency,
        part_seconds=b.part_duration_ms / 1000,
        segment_seconds=float(b.segment_duration_seconds),
        zero_latency_encoding=bool(b.zero_latency_encoding),
        screenshot_interval_seconds=settings.screenshots.interval_seconds,
        screenshot_width=settings.screenshots.width,
        output_url=endpoints.origin_upload_url(origin_host, origin_upload),
        output_token_file=secret_file(creds_mod.UPLOAD_TOKEN),
        output_urls=replica_urls,
        **_whep_settings(config) if b.outputs.webrtc else {},
    )
    out["origin"] = OriginConfig(
        livestream=ident,
        agent_port=roles.AGENT_PORT,
        agent_token_file=secret_file(creds_mod.AGENT_TOKEN),
        http_port=origin_http,
        upload_port=origin_upload,
        dvr_enabled=settings.dvr.enabled,
        dvr_window_seconds=settings.dvr.duration_seconds,
        playback_secret_file=secret_file(creds_mod.PLAYBACK_SECRET),
        upload_token_file=secret_file(creds_mod.UPLOAD_TOKEN),
        read_token_file=secret_file(creds_mod.READ_TOKEN),
        projection=spec.projection or "regular",
        low_latency=b.low_latency,
        part_seconds=b.part_duration_ms / 1000,
        whep_url=(
            f"http://{service_host(name, namespace, 'transcoder')}:{roles.AGENT_PORT}/"
            f"{endpoints.PLAYBACK_PATHS['whep']}"
        )
        if b.outputs.webrtc
        else None,
        peer_upload_urls=replica_urls,
        trusted_proxies=list(config.playback_trusted_proxies),
    )
    rec = settings.recording
    if rec.mode != "disabled":
        read_token_file: Optional[str] = secret_file(creds_mod.READ_TOKEN)
        fallbacks: list[str] = []
        backup_source: Optional[str] = None
        if rec.type == "transcoded":
            path = endpoints.PLAYBACK_PATHS["hlsCmaf" if b.outputs.hls_cmaf else "hlsMpegts"]
            source_url = f"http://{origin_host}:{origin_http}/{path}"
        elif pull_source is not None:
            # "origin" means the source as pushed; in pull mode that is the pull URIs, third
            # parties that must never see our token.
            source_url, *fallbacks = pull_source.uris or []
            read_token_file = None
        else:
            # The recording is of the show, not of one encoder: it goes on from the backup ingest
            # when main drops (the same read token opens both), while Desired.backup says it exists.
            source_url = endpoints.ingest_read_url(service_host(name, namespace, "ingest"), ingest_port)
            backup_source = backup_read_url(name, namespace)
        out["recorder"] = RecorderConfig(
            livestream=ident,
            agent_port=roles.AGENT_PORT,
            agent_token_file=secret_file(creds_mod.AGENT_TOKEN),
            source_url=source_url,
            fallback_source_urls=fallbacks,
            backup_source_url=backup_source,
            record_type=rec.type,
            read_token_file=read_token_file,
            output_dir=RECORDINGS_DIR,
            split_seconds=rec.split_seconds,
            s3=render_s3_upload(rec.storage),
        )
        # Viewers play the recordings on the volume through the origin, which reads them from the recorder.
        out["origin"] = out["origin"].model_copy(
            update={"recorder_url": f"http://{service_host(name, namespace, 'recorder')}:{roles.AGENT_PORT}"}
        )
    return out


def origin_replica_upload_urls(name: str, namespace: str, replicas: int) -> list[str]:
    """Each origin replica's own upload URL; none for a single origin (reached through its Service)."""
    if replicas <= 1:
        return []
    upload = port_number(roles.ORIGIN, "upload")
    return [endpoints.origin_upload_url(origin_replica_host(name, namespace, i), upload) for i in range(replicas)]


def render_s3_upload(storage: Optional[RecordingStorage]) -> Optional[S3UploadConfig]:
    """The recorder's upload target; None without ``recording.storage.s3``. The credentials are
    files of the mounted Secret (``_volumes``), never values in the ConfigMap. ``resolve`` has
    already refused an ``s3`` that lacks endpoint, bucket or credentialsSecret."""
    s3 = storage.s3 if storage else None
    if s3 is None:
        return None
    return S3UploadConfig(
        endpoint=s3.endpoint,
        bucket=s3.bucket,
        prefix=(s3.prefix or "").strip("/"),
        region=s3.region or DEFAULT_S3_REGION,
        force_path_style=bool(s3.force_path_style),
        access_key_id_file=f"{S3_SECRET_DIR}/{S3_ACCESS_KEY_ID}",
        secret_access_key_file=f"{S3_SECRET_DIR}/{S3_SECRET_ACCESS_KEY}",
        keep_local_copy=bool(s3.keep_local_copy),
    )


def config_json(model: BaseModel) -> str:
    """The ConfigMap payload: sorted keys so re-rendering is byte-identical."""
    wire = model.wire() if hasattr(model, "wire") else model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return json.dumps(wire, sort_keys=True, indent=2) + "\n"
