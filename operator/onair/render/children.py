"""Every Kubernetes object a Livestream owns, rendered from (Livestream, CallType, config, credentials).

Pure and deterministic: the same inputs give byte-identical manifests (sorted JSON in
ConfigMaps, no clocks, no randomness), so re-applying them with server-side apply is a no-op.
The one time-dependent child, the member tokens, takes ``now`` as an input and changes only when
``now`` enters a new 12 h bucket.

Children (``<ls>`` is the Livestream name, at most 45 characters by CEL):

=====================================  =======================================================
``Secret <ls>-credentials``             keys and publish URLs (``onair.render.credentials``)
``Secret <ls>-member-tokens``           playback tokens of members who may join backstage (``onair.render.grants``)
``Secret <ls>-turn``                    the TURN server's shared secret, for the ingest to mint WHIP sessions' TURN credentials
``ConfigMap <ls>-<key>``                ``config.json`` = the role's agent config, per key below
``Deployment <ls>-<key>``               one pod per key: Recreate (one writer per volume), the ingest slots roll
``Service <ls>-ingest[-backup]``        push ports of the enabled protocols (type from config)
``Service <ls>-origin``                 the origin's HTTP port (playback) and upload port (the transcoder's)
``Service <ls>-transcoder``             with ``outputs.webrtc``: the transcoder's agent port, for the origin's WHEP proxy
``NetworkPolicy <ls>-<key>``            who may reach each pod's ports (``render_network_policy``)
``Ingress|HTTPRoute <ls>-playback``     with ``playbackRoute``: the public host to the origin's ``http`` port
``PersistentVolumeClaim <ls>-dvr``      the origin's live/DVR window (owned)
``PersistentVolumeClaim <ls>-recordings``  in ``keep``: created, never owned, never pruned
=====================================  =======================================================

Keys: ``ingest`` and ``ingest-backup`` (push mode; the backup only with ``ingest.backup``),
``transcoder``, ``origin``, ``recorder`` (unless ``recording.mode`` is disabled). Pull mode
(``spec.source.mode: pull``) renders no ingest at all and hands the URIs to the transcoder.

``spec.active: false`` changes configs and ``Desired`` only: pods, Services and URLs stay.

``ingest.backup`` adds or removes the backup ingest's own objects and sets ``Desired.backup``;
the transcoder's and recorder's configs name the backup ingest either way, so turning it on or off
on a live stream restarts neither (no lost segments, no cut in the recording).

How the controller uses the result:

* apply every object in ``objects`` (server-side apply, field manager ``onair-operator``);
  PersistentVolumeClaims are mostly immutable once bound, so create them when absent and do not
  re-apply them (``create_only(obj)``);
* create every object in ``keep`` when absent and never update or delete it;
* prune: list ``CHILD_KINDS`` with ``child_selector(name)`` and delete those whose
  ``ownerReferences`` name this Livestream's uid but that are not in ``objects`` (e.g. the backup
  ingest after ``ingest.backup`` is turned off). The kept recordings PVC carries no label of
  ``child_selector`` and no ownerReference, so it can never be pruned;
* poll the agents: pods matching ``agent_selectors[key]`` on ``roles.AGENT_PORT``.

A missing CallType is not handled here: the controller calls ``onair.render.resolve.resolve``
first and, on a problem, reports it in status (Stalled) and leaves existing children alone.
``calltype=None`` here means "built-in defaults + override" and is meant for tests and tools.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Mapping, Optional

from pydantic import BaseModel

from onair import endpoints, roles
from onair.api.agent import IngestConfig, OriginConfig, RecorderConfig, Rung, S3UploadConfig, TranscoderConfig
from onair.api.calltype import CallType
from onair.api.meta import LABEL_RECORDINGS_OF, LABEL_ROLE, labels, owner_reference
from onair.api.livestream import IngestEndpoints, LivestreamSpec, PlaybackUrls
from onair.api.settings import (DEFAULT_S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, CallSettings,
                                RecordingStorage)
from onair.controller.config import OperatorConfig
from onair.render import credentials as creds_mod
from onair.render import grants
from onair.render import ladder
from onair.render import rollout
from onair.render.credentials import Credentials
from onair.render.effective import effective_settings
from onair.render.resolve import Resolved

CONFIG_HASH_ANNOTATION = "onair.dev/config-sha256"
CONFIG_KEY = "config.json"
UID = 10001
TLS_DIR = "/etc/onair/tls"
# The TURN server's shared secret, copied from the operator's ONAIR_WHIP_TURN_SECRET_FILE into
# <ls>-turn (a pod can only mount Secrets of its own namespace); the ingest mints per-session
# TURN credentials from it.
TURN_DIR = "/etc/onair/turn"
TURN_SECRET_KEY = "turnSecret"
RECORDINGS_DIR = "/recordings"
# The recording storage's S3 credentials (recording.storage.s3.credentialsSecret), as files.
S3_SECRET_DIR = "/etc/onair/s3"

# (apiVersion, kind) of everything render_children can own, for pruning.
CHILD_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Service"), ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"), ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)

# Which credential files each role may read: least privilege, and the convenience publish URLs
# never reach a pod. The read token is added for a role whose config names it (``_secret_keys``):
# a recorder or transcoder reading a third-party pull source never gets it. Every agent checks the
# agent token the operator calls it with.
_SECRET_KEYS: dict[str, tuple[str, ...]] = {
    # The playback secret also signs members' personal publish tokens, which the ingest verifies.
    "ingest": (creds_mod.STREAM_KEY, creds_mod.SRT_PASSPHRASE, creds_mod.WHIP_TOKEN, creds_mod.PLAYBACK_SECRET,
               creds_mod.AGENT_TOKEN),
    "transcoder": (creds_mod.UPLOAD_TOKEN, creds_mod.AGENT_TOKEN),
    "origin": (creds_mod.PLAYBACK_SECRET, creds_mod.UPLOAD_TOKEN, creds_mod.AGENT_TOKEN),
    "recorder": (creds_mod.AGENT_TOKEN,),
}
# Grace before SIGKILL: the recorder finalises its MP4 on SIGTERM, the others just stop.
_GRACE_SECONDS = {"ingest": 15, "transcoder": 30, "origin": 15, "recorder": 60}


@dataclass(frozen=True)
class Urls:
    """What goes into status: push endpoints (no credentials) and playback URLs."""

    ingest: IngestEndpoints
    playback: PlaybackUrls


@dataclass(frozen=True)
class RenderedChildren:
    objects: list[dict]
    keep: list[dict]
    effective: CallSettings
    urls: Urls
    agent_configs: dict[str, BaseModel]
    agent_selectors: dict[str, dict[str, str]] = field(default_factory=dict)
    credentials_secret: str = ""
    members: grants.MemberAccess = field(default_factory=grants.MemberAccess)
    member_tokens_secret: str = ""  # "" when no member may join backstage (no Secret rendered)
    # When the member tokens must be re-minted (see onair.render.grants); None without tokens.
    tokens_refresh_at: Optional[datetime] = None
    # The parsed spec it was rendered from: the status polls read it instead of parsing again.
    spec: Optional[LivestreamSpec] = None


# ----------------------------------------------------------------------------- names & labels
def child_name(livestream: str, key: str) -> str:
    return f"{livestream}-{key}"


def service_host(livestream: str, namespace: str, key: str) -> str:
    """Cluster DNS of a child Service, without the cluster domain (pods resolve it via search)."""
    return f"{child_name(livestream, key)}.{namespace}.svc"


def role_of(key: str) -> str:
    return "ingest" if key.startswith("ingest") else key


def selector_labels(name: str, key: str) -> dict[str, str]:
    """A Deployment's (immutable) selector: never add to it, or existing Deployments cannot update."""
    return {"app.kubernetes.io/name": "onair", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": key}


def create_only(obj: Mapping) -> bool:
    """True for objects the controller should create when absent but never re-apply."""
    return obj.get("kind") == "PersistentVolumeClaim"


def _meta(ls_meta: Mapping, name: str, component: str) -> dict:
    return {"name": name, "namespace": ls_meta["namespace"], "labels": labels(ls_meta["name"], component),
            "ownerReferences": [owner_reference(ls_meta)]}


# ----------------------------------------------------------------------------- urls
def _tls(config: OperatorConfig) -> bool:
    return config.ingest_tls_secret is not None


@dataclass(frozen=True)
class IngestExposure:
    """What Kubernetes assigned to one ingest Service (read from the Service and its pod by the
    controller): the nodePort of each port name, the load balancer's address, the pod's node."""

    node_ports: Mapping[str, int] = field(default_factory=dict)
    load_balancer: Optional[str] = None
    node_address: Optional[str] = None


def ingest_exposure(service: Mapping, host_ip: Optional[str]) -> IngestExposure:
    """From a Service object as the API server returns it, and the ingest pod's ``status.hostIP``."""
    ports = {p["name"]: p["nodePort"] for p in (service.get("spec") or {}).get("ports") or ()
             if p.get("name") and p.get("nodePort")}
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = next((i.get("hostname") or i.get("ip") for i in ingress if i.get("hostname") or i.get("ip")), None)
    return IngestExposure(node_ports=ports, load_balancer=address, node_address=host_ip)


def _service_port(port_name: str) -> int:
    return _port(roles.INGEST, port_name)


def public_ingest(config: OperatorConfig, name: str, namespace: str, slot: str,
                  exposure: Optional[IngestExposure] = None) -> tuple[str, Callable[[str], int]]:
    """(host, port of a port name) encoders dial.

    ClusterIP: cluster DNS (or the host template) and the Service port. LoadBalancer: the host
    template or the load balancer's address, and the Service port. NodePort: the host template or
    the ingest pod's node, and the nodePort (fixed in config or allocated). Until Kubernetes has
    assigned what is needed: the in-cluster address, which works from inside the cluster.
    """
    internal = config.ingest_host(name, namespace, slot)
    kind = config.ingest_service_type
    if kind == "LoadBalancer" and not config.ingest_host_template and exposure and exposure.load_balancer:
        return exposure.load_balancer, _service_port
    if kind == "NodePort":
        node_ports = {**(dict(exposure.node_ports) if exposure else {}), **config.ingest_node_ports.get(slot, {})}
        host = internal if config.ingest_host_template else (exposure.node_address if exposure else None)
        if host and node_ports:
            return host, lambda port_name: node_ports.get(port_name, _service_port(port_name))
    return internal, _service_port


def render_urls(name: str, namespace: str, spec: LivestreamSpec, effective: CallSettings,
                config: OperatorConfig, exposure: Optional[Mapping[str, IngestExposure]] = None) -> Urls:
    """``exposure``: per slot (main/backup), what Kubernetes assigned to the ingest Service; without
    it a NodePort/LoadBalancer URL is the in-cluster one until the controller has read it."""
    ingest: dict[str, str] = {}
    if not _pull(spec):
        protocols = effective.ingest.protocols
        slots = ("main", "backup") if effective.ingest.backup else ("main",)
        for slot in slots:
            host, port = public_ingest(config, name, namespace, slot, (exposure or {}).get(slot))
            prefix = "" if slot == "main" else "backup_"
            if "rtmp" in protocols:
                ingest[prefix + "rtmp"] = endpoints.rtmp_push_url(host, port("rtmp"))
                if _tls(config):
                    ingest[prefix + "rtmps"] = endpoints.rtmp_push_url(host, port("rtmps"), tls=True)
            if "srt" in protocols:
                ingest[prefix + "srt"] = endpoints.srt_push_url(host, port("srt"))
            if "whip" in protocols:
                ingest[prefix + "whip"] = endpoints.whip_url(host, port("whip"), tls=_tls(config))
    playback: dict[str, str] = {}
    b = effective.broadcasting
    if b.mode != "disabled":
        all_urls = endpoints.playback_urls(config.playback_base_url(name, namespace))
        wanted = {"hlsCmaf": b.outputs.hls_cmaf, "hlsMpegts": b.outputs.hls_mpegts, "dash": b.outputs.dash,
                  "player": True, "screenshot": effective.screenshots.enabled, "whep": bool(b.outputs.webrtc)}
        playback = {key: url for key, url in all_urls.items() if wanted[key]}
    return Urls(ingest=IngestEndpoints(**ingest), playback=PlaybackUrls.model_validate(playback))


# ----------------------------------------------------------------------------- agent configs
def _pull(spec: LivestreamSpec) -> bool:
    return spec.source is not None and spec.source.mode == "pull"


def _port(role: roles.Role, port_name: str) -> int:
    return next(p.number for p in role.ports if p.name == port_name)


def _secret_file(key: str) -> str:
    return f"{roles.SECRET_DIR}/{key}"


def render_ladder(effective: CallSettings) -> list[Rung]:
    """The configured ladder, sized for a nominal 16:9 source as tall as the tallest track.

    Nobody has published when this renders, so the real source size is unknown: a nominal source
    that fits every configured track keeps them all (a 1080p guess would silently drop 1440p and
    2160p). The transcoder fits the ladder to the source it receives (``ladder.fit_ladder``),
    which is where upscaling rungs are dropped.
    """
    hls = effective.broadcasting.hls
    tracks = list(hls.quality_tracks)
    tallest = max(ladder.parse_track(t)[0] for t in tracks)
    if hls.source_passthrough:
        tracks.append(ladder.SOURCE)
    return ladder.build_ladder(tracks, ladder.even(tallest * 16 / 9), tallest)


def backup_read_url(name: str, namespace: str) -> str:
    return endpoints.ingest_read_url(service_host(name, namespace, "ingest-backup"), _port(roles.INGEST, "rtmp"))


def _whep_settings(config: OperatorConfig) -> dict:
    """The transcoder's WHEP peers take the operator's ICE servers as the ingest's WHIP peer does: its own
    (``whipIngestIceServers``, else ``whipIceServers``), the viewers' in the answer (``whipIceServers``),
    TURN credentials minted per session from the same shared secret."""
    own = config.whip_ingest_ice_servers if config.whip_ingest_ice_servers is not None else config.whip_ice_servers
    return dict(whep=True, whep_ice_servers=list(own), whep_client_ice_servers=list(config.whip_ice_servers),
                whep_turn_secret_file=f"{TURN_DIR}/{TURN_SECRET_KEY}" if config.whip_turn_secret_file else None,
                whep_turn_credential_ttl_seconds=config.whip_turn_credential_ttl_seconds)


def render_agent_configs(name: str, namespace: str, spec: LivestreamSpec, effective: CallSettings,
                         config: OperatorConfig) -> dict[str, BaseModel]:
    ident = f"{namespace}/{name}"
    active = spec.active is not False
    pull = _pull(spec)
    out: dict[str, BaseModel] = {}
    if not pull:
        protocols: list[str] = []
        for proto in effective.ingest.protocols:
            protocols.append(proto)
            if proto == "rtmp" and _tls(config):
                protocols.append("rtmps")
        tls_files = ({"tls_cert_file": f"{TLS_DIR}/tls.crt", "tls_key_file": f"{TLS_DIR}/tls.key"}
                     if _tls(config) else {})
        whip = "whip" in protocols
        ingest_ice = config.whip_ingest_ice_servers if config.whip_ingest_ice_servers is not None \
            else config.whip_ice_servers
        for slot in ("main", "backup") if effective.ingest.backup else ("main",):
            out["ingest" if slot == "main" else "ingest-backup"] = IngestConfig(
                livestream=ident, slot=slot, protocols=protocols,
                agent_port=roles.AGENT_PORT, rtmp_port=_port(roles.INGEST, "rtmp"),
                rtmps_port=_port(roles.INGEST, "rtmps"), srt_port=_port(roles.INGEST, "srt"),
                whip_port=_port(roles.INGEST, "whip"), srt_latency_ms=effective.ingest.srt_latency_ms,
                stream_key_file=_secret_file(creds_mod.STREAM_KEY),
                srt_passphrase_file=_secret_file(creds_mod.SRT_PASSPHRASE),
                whip_token_file=_secret_file(creds_mod.WHIP_TOKEN),
                publish_token_secret_file=_secret_file(creds_mod.PLAYBACK_SECRET),
                read_token_file=_secret_file(creds_mod.READ_TOKEN),
                agent_token_file=_secret_file(creds_mod.AGENT_TOKEN),
                active=active, whip_ice_servers=list(ingest_ice), whip_client_ice_servers=list(config.whip_ice_servers),
                whip_turn_secret_file=f"{TURN_DIR}/{TURN_SECRET_KEY}" if whip and config.whip_turn_secret_file else None,
                whip_turn_credential_ttl_seconds=config.whip_turn_credential_ttl_seconds, **tls_files)

    ingest_port = _port(roles.INGEST, "rtmp")
    origin_http = _port(roles.ORIGIN, "http")
    origin_upload = _port(roles.ORIGIN, "upload")
    origin_host = service_host(name, namespace, "origin")
    b = effective.broadcasting
    out["transcoder"] = TranscoderConfig(
        livestream=ident, agent_port=roles.AGENT_PORT, agent_token_file=_secret_file(creds_mod.AGENT_TOKEN),
        main_url=None if pull else endpoints.ingest_read_url(service_host(name, namespace, "ingest"), ingest_port),
        # Always, in push mode: whether the backup ingest exists reaches the transcoder through
        # Desired.backup, so turning it on or off on a live stream restarts nothing.
        backup_url=None if pull else backup_read_url(name, namespace),
        # The URLs above carry no token (a ConfigMap is no place for it): the transcoder adds it.
        read_token_file=None if pull else _secret_file(creds_mod.READ_TOKEN),
        pull_uris=list(spec.source.uris or []) if pull else [],
        ladder=render_ladder(effective),
        hls_cmaf=b.outputs.hls_cmaf, hls_mpegts=b.outputs.hls_mpegts, dash=b.outputs.dash,
        low_latency=b.low_latency, part_seconds=b.part_duration_ms / 1000,
        segment_seconds=float(b.segment_duration_seconds),
        screenshot_interval_seconds=effective.screenshots.interval_seconds,
        screenshot_width=effective.screenshots.width,
        output_url=endpoints.origin_upload_url(origin_host, origin_upload),
        output_token_file=_secret_file(creds_mod.UPLOAD_TOKEN),
        **_whep_settings(config) if b.outputs.webrtc else {},
    )
    out["origin"] = OriginConfig(
        livestream=ident, agent_port=roles.AGENT_PORT, agent_token_file=_secret_file(creds_mod.AGENT_TOKEN),
        http_port=origin_http, upload_port=origin_upload,
        dvr_enabled=effective.dvr.enabled, dvr_window_seconds=effective.dvr.duration_seconds,
        playback_secret_file=_secret_file(creds_mod.PLAYBACK_SECRET),
        upload_token_file=_secret_file(creds_mod.UPLOAD_TOKEN),
        read_token_file=_secret_file(creds_mod.READ_TOKEN),
        projection=spec.projection or "regular", low_latency=b.low_latency, part_seconds=b.part_duration_ms / 1000,
        whep_url=(f"http://{service_host(name, namespace, 'transcoder')}:{roles.AGENT_PORT}/"
                  f"{endpoints.PLAYBACK_PATHS['whep']}") if b.outputs.webrtc else None,
    )
    rec = effective.recording
    if rec.mode != "disabled":
        read_token_file: Optional[str] = _secret_file(creds_mod.READ_TOKEN)
        fallbacks: list[str] = []
        backup_source: Optional[str] = None
        if rec.type == "transcoded":
            path = endpoints.PLAYBACK_PATHS["hlsCmaf" if b.outputs.hls_cmaf else "hlsMpegts"]
            source_url = f"http://{origin_host}:{origin_http}/{path}"
        elif pull:
            # "origin" means the source as pushed; in pull mode that is the pull URIs, third
            # parties that must never see our token.
            source_url, *fallbacks = spec.source.uris
            read_token_file = None
        else:
            # The recording is of the show, not of one encoder: it goes on from the backup ingest
            # when main drops (the same read token opens both), while Desired.backup says it exists.
            source_url = endpoints.ingest_read_url(service_host(name, namespace, "ingest"), ingest_port)
            backup_source = backup_read_url(name, namespace)
        out["recorder"] = RecorderConfig(
            livestream=ident, agent_port=roles.AGENT_PORT, agent_token_file=_secret_file(creds_mod.AGENT_TOKEN),
            source_url=source_url, fallback_source_urls=fallbacks, backup_source_url=backup_source,
            record_type=rec.type, read_token_file=read_token_file, output_dir=RECORDINGS_DIR,
            split_seconds=rec.split_seconds, s3=render_s3_upload(rec.storage))
        # Viewers play the recordings on the volume through the origin, which reads them from the recorder.
        out["origin"] = out["origin"].model_copy(update={
            "recorder_url": f"http://{service_host(name, namespace, 'recorder')}:{roles.AGENT_PORT}"})
    return out


def render_s3_upload(storage: Optional[RecordingStorage]) -> Optional[S3UploadConfig]:
    """The recorder's upload target; None without ``recording.storage.s3``. The credentials are
    files of the mounted Secret (``_volumes``), never values in the ConfigMap. ``resolve`` has
    already refused an ``s3`` that lacks endpoint, bucket or credentialsSecret."""
    s3 = storage.s3 if storage else None
    if s3 is None:
        return None
    return S3UploadConfig(
        endpoint=s3.endpoint, bucket=s3.bucket, prefix=(s3.prefix or "").strip("/"),
        region=s3.region or DEFAULT_S3_REGION, force_path_style=bool(s3.force_path_style),
        access_key_id_file=f"{S3_SECRET_DIR}/{S3_ACCESS_KEY_ID}",
        secret_access_key_file=f"{S3_SECRET_DIR}/{S3_SECRET_ACCESS_KEY}",
        keep_local_copy=bool(s3.keep_local_copy))


def config_json(model: BaseModel) -> str:
    """The ConfigMap payload: sorted keys so re-rendering is byte-identical."""
    wire = model.wire() if hasattr(model, "wire") else model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return json.dumps(wire, sort_keys=True, indent=2) + "\n"


# ----------------------------------------------------------------------------- pod pieces
def pod_security_context() -> dict:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": UID, "runAsGroup": UID, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _probe(period: int, failures: int, path: str = "/healthz") -> dict:
    return {"httpGet": {"path": path, "port": "agent"}, "periodSeconds": period,
            "timeoutSeconds": 3, "failureThreshold": failures}


def _volumes(name: str, key: str, agent: BaseModel, effective: CallSettings,
             config: OperatorConfig) -> tuple[list[dict], list[dict]]:
    role = role_of(key)
    volumes = [{"name": "config", "configMap": {"name": child_name(name, key),
                                                "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}},
               {"name": "tmp", "emptyDir": {}}]
    # subPath: the config file sits next to the secret directory; agents read it once at start
    # and the config hash annotation restarts the pod when it changes.
    mounts = [{"name": "config", "mountPath": roles.CONFIG_PATH, "subPath": CONFIG_KEY, "readOnly": True},
              {"name": "tmp", "mountPath": "/tmp"}]
    secret_keys = _secret_keys(role, agent)
    if secret_keys:
        volumes.append({"name": "credentials", "secret": {
            "secretName": creds_mod.secret_name(name), "defaultMode": 0o440,
            "items": [{"key": k, "path": k} for k in secret_keys]}})
        mounts.append({"name": "credentials", "mountPath": roles.SECRET_DIR, "readOnly": True})
    if role == "ingest" and _tls(config):
        volumes.append({"name": "tls", "secret": {"secretName": config.ingest_tls_secret, "defaultMode": 0o440,
                                                  "items": [{"key": "tls.crt", "path": "tls.crt"},
                                                            {"key": "tls.key", "path": "tls.key"}]}})
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    if getattr(agent, "whip_turn_secret_file", None) or getattr(agent, "whep_turn_secret_file", None):
        volumes.append({"name": "turn", "secret": {"secretName": child_name(name, "turn"), "defaultMode": 0o440,
                                                   "items": [{"key": TURN_SECRET_KEY, "path": TURN_SECRET_KEY}]}})
        mounts.append({"name": "turn", "mountPath": TURN_DIR, "readOnly": True})
    if role in ("ingest", "transcoder"):
        volumes.append({"name": "work", "emptyDir": {}})
        mounts.append({"name": "work", "mountPath": agent.work_dir})
    if role == "origin":
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": child_name(name, "dvr")}})
        mounts.append({"name": "data", "mountPath": agent.data_dir})
    if role == "recorder":
        volumes.append({"name": "recordings", "persistentVolumeClaim": {"claimName": recordings_claim(name, effective)}})
        mounts.append({"name": "recordings", "mountPath": agent.output_dir})
        storage = effective.recording.storage
        if storage and storage.s3 and storage.s3.credentials_secret:
            # Optional: a missing Secret must not keep the recorder (and the recording) from
            # starting; the recorder reports it in /status and the kubelet fills the files in
            # once the Secret exists.
            volumes.append({"name": "s3-credentials", "secret": {
                "secretName": storage.s3.credentials_secret, "defaultMode": 0o440, "optional": True,
                "items": [{"key": k, "path": k} for k in (S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY)]}})
            mounts.append({"name": "s3-credentials", "mountPath": S3_SECRET_DIR, "readOnly": True})
    return volumes, mounts


def _secret_keys(role: str, agent: BaseModel) -> tuple[str, ...]:
    keys = _SECRET_KEYS[role]
    if getattr(agent, "read_token_file", None) == _secret_file(creds_mod.READ_TOKEN):
        keys += (creds_mod.READ_TOKEN,)
    return keys


def _spread(name: str) -> dict:
    """Main and backup ingest on different nodes and zones when the cluster has them.

    ScheduleAnyway/preferred: a one-node cluster still runs both (a backup on the same node still
    covers a crashed or frozen encoder connection).
    """
    ingest_pods = {"matchLabels": {"app.kubernetes.io/instance": name, LABEL_ROLE: "ingest"}}
    return {
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": ingest_pods}
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": weight, "podAffinityTerm": {"topologyKey": key, "labelSelector": ingest_pods}}
            for weight, key in ((100, "kubernetes.io/hostname"), (50, "topology.kubernetes.io/zone"))
        ]}},
    }


def render_deployment(ls_meta: Mapping, key: str, agent: BaseModel, effective: CallSettings,
                      config: OperatorConfig) -> dict:
    name = ls_meta["name"]
    role = roles.ROLES[role_of(key)]
    volumes, mounts = _volumes(name, key, agent, effective, config)
    container: dict = {
        "name": role.name,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(role.command),
        "args": role.args(),
        "ports": [{"name": p.name, "containerPort": p.number, "protocol": p.protocol} for p in role.ports],
        "resources": config.resources_for(role.name).manifest(),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        # Readiness and liveness wait for the first answer, asked every second: a (re)started
        # agent joins its Service (encoders, viewers) a second after it listens instead of at
        # the next 5 s readiness period, and a slow start is never a liveness failure.
        "startupProbe": _probe(1, 120),
        "readinessProbe": _probe(5, 3, role.readiness_path),
        "livenessProbe": _probe(10, 6),
    }
    pod_labels = {**labels(name, key), LABEL_ROLE: role.name}
    pod_spec: dict = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": _GRACE_SECONDS[role.name],
        "containers": [container],
        "volumes": volumes,
    }
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in config.image_pull_secrets]
    if role.name == "ingest":
        pod_spec.update(_spread(name))
    digest = hashlib.sha256(config_json(agent).encode()).hexdigest()
    template = {"metadata": {"labels": pod_labels, "annotations": {CONFIG_HASH_ANNOTATION: digest}},
                "spec": pod_spec}
    metadata = _meta(ls_meta, child_name(name, key), key)
    # Whether applying this starts a rollout (onair.render.rollout staggers the ingest slots').
    metadata["annotations"] = {rollout.TEMPLATE_HASH_ANNOTATION: rollout.template_hash(template)}
    if role.name == "ingest":
        # The new pod starts next to the old one and the old one goes only once the new one is
        # Ready: the slot's Service always has a pod that takes the encoder's reconnect at once.
        # Two pods of one slot for a moment are harmless (nothing shared but the Service; the
        # publisher and the transcoder's read stay on the old pod until it stops).
        strategy: dict = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    else:
        # One pod at a time: a second origin/recorder could not mount the RWO volume, and two
        # transcoders would race for the same outputs.
        strategy = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "strategy": strategy,
            "selector": {"matchLabels": selector_labels(name, key)},
            "template": template,
        },
    }


# ----------------------------------------------------------------------------- other objects
def render_configmap(ls_meta: Mapping, key: str, agent: BaseModel) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(ls_meta, child_name(ls_meta["name"], key), key),
            "data": {CONFIG_KEY: config_json(agent)}}


def slot_of(key: str) -> str:
    return "backup" if key == "ingest-backup" else "main"


def render_ingest_service(ls_meta: Mapping, key: str, agent: IngestConfig, config: OperatorConfig) -> dict:
    """The push ports of the enabled protocols, and always RTMP: it is also the in-cluster read
    path of the transcoder and recorder (the agent refuses RTMP pushes when rtmp is not enabled).

    Port names are stable (rtmp, rtmps, srt, whip), so a load balancer or firewall rule can name
    them; SRT is UDP. A NodePort/LoadBalancer Service mixes TCP and UDP ports (GA since 1.26; a
    cloud whose load balancers cannot must be given ``ingest.protocols`` of one transport).
    """
    wanted = {"rtmp", *agent.protocols}
    ports = [p for p in roles.INGEST.ports if p.name in wanted]
    external = config.ingest_service_type != "ClusterIP"
    fixed = config.ingest_node_ports.get(slot_of(key), {}) if external else {}
    spec: dict = {
        "type": config.ingest_service_type,
        "selector": selector_labels(ls_meta["name"], key),
        "ports": [{"name": p.name, "port": p.number, "targetPort": p.name, "protocol": p.protocol,
                   **({"nodePort": fixed[p.name]} if p.name in fixed else {})} for p in ports],
    }
    if external and config.ingest_external_traffic_policy:
        spec["externalTrafficPolicy"] = config.ingest_external_traffic_policy
    metadata = _meta(ls_meta, child_name(ls_meta["name"], key), key)
    if config.ingest_service_annotations:
        metadata["annotations"] = dict(sorted(config.ingest_service_annotations.items()))
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


PLAYBACK_ROUTE_KEY = "playback"


def render_playback_route(ls_meta: Mapping, config: OperatorConfig) -> Optional[dict]:
    """The Ingress or HTTPRoute from the public host (and path prefix) to the origin's ``http`` port
    only: never the upload port (the transcoder's) or the agent port. None without ``playbackRoute``.

    The origin serves at ``/`` and its player page loads everything by relative URL, so a path
    prefix works once it is stripped: the HTTPRoute strips it with URLRewrite (core Gateway API);
    an Ingress cannot portably, so the config admits only ``/`` with an Ingress.
    """
    if config.playback_route == "none":
        return None
    name, namespace = ls_meta["name"], ls_meta["namespace"]
    host = config.playback_route_host(name, namespace)
    prefix = config.playback_route_path(name, namespace)
    origin = child_name(name, "origin")
    metadata = _meta(ls_meta, child_name(name, PLAYBACK_ROUTE_KEY), PLAYBACK_ROUTE_KEY)
    if config.playback_route_annotations:
        metadata["annotations"] = dict(sorted(config.playback_route_annotations.items()))
    if config.playback_route == "ingress":
        spec: dict = {"rules": [{"host": host, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": origin, "port": {"name": "http"}}}}]}}]}
        if config.playback_ingress_class:
            spec["ingressClassName"] = config.playback_ingress_class
        secret = config.playback_tls_secret(name, namespace)
        if secret:
            spec["tls"] = [{"hosts": [host], "secretName": secret}]
        return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec}
    parent: dict = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": config.playback_gateway_name}
    if config.playback_gateway_namespace:
        parent["namespace"] = config.playback_gateway_namespace
    if config.playback_gateway_section_name:
        parent["sectionName"] = config.playback_gateway_section_name
    rule: dict = {"matches": [{"path": {"type": "PathPrefix", "value": prefix or "/"}}],
                  "backendRefs": [{"group": "", "kind": "Service", "name": origin,
                                   "port": _port(roles.ORIGIN, "http")}]}
    if prefix:
        rule["filters"] = [{"type": "URLRewrite", "urlRewrite": {
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": metadata,
            "spec": {"parentRefs": [parent], "hostnames": [host], "rules": [rule]}}


def render_origin_service(ls_meta: Mapping) -> dict:
    """Playback (``http``, what an Ingress or CDN points at) and the transcoder's ``upload`` port.

    ClusterIP, so the upload port never leaves the cluster; the agent port is not listed at all
    (the operator calls the pod).
    """
    ports = [p for p in roles.ORIGIN.ports if p.name in ("http", "upload")]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(ls_meta, child_name(ls_meta["name"], "origin"), "origin"),
        "spec": {"type": "ClusterIP", "selector": selector_labels(ls_meta["name"], "origin"),
                 "ports": [{"name": p.name, "port": p.number, "targetPort": p.name, "protocol": p.protocol}
                           for p in ports]},
    }


def render_recorder_service(ls_meta: Mapping) -> dict:
    """The recorder's agent port, for the origin alone (the NetworkPolicy): it reads the finished
    recordings on the volume (``GET /vod/<file>``, agent token) to serve them to viewers."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(ls_meta, child_name(ls_meta["name"], "recorder"), "recorder"),
        "spec": {"type": "ClusterIP", "selector": selector_labels(ls_meta["name"], "recorder"),
                 "ports": [{"name": "agent", "port": roles.AGENT_PORT, "targetPort": "agent", "protocol": "TCP"}]},
    }


def render_transcoder_service(ls_meta: Mapping) -> dict:
    """The transcoder's agent port, for the origin alone (the NetworkPolicy): viewers' WHEP offers, which the
    origin lets in under the playback rules and passes on with the agent token. WebRTC media itself goes
    between the viewer and the pod (ICE), not through a Service."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(ls_meta, child_name(ls_meta["name"], "transcoder"), "transcoder"),
        "spec": {"type": "ClusterIP", "selector": selector_labels(ls_meta["name"], "transcoder"),
                 "ports": [{"name": "agent", "port": roles.AGENT_PORT, "targetPort": "agent", "protocol": "TCP"}]},
    }


# WebRTC (WHIP, WHEP) media arrives on UDP ports the ICE stack picks at random.
_WEBRTC_UDP = {"protocol": "UDP", "port": 1024, "endPort": 65535}


def _policy_port(port_name: str, role: roles.Role) -> dict:
    port = next(p for p in role.ports if p.name == port_name)
    return {"protocol": port.protocol, "port": port.name}


def _pods_of(name: str, keys: list[str]) -> list[dict]:
    return [{"podSelector": {"matchLabels": selector_labels(name, key)}} for key in keys]


def render_network_policy(ls_meta: Mapping, key: str, agent: BaseModel, readers: list[str],
                          config: OperatorConfig) -> dict:
    """Who may reach the pod of ``key``, port by port; everything else is dropped where the
    cluster's network plugin enforces NetworkPolicy.

    * ``agent``: the operator's pods (``operatorNamespace``/``operatorPodLabels``) and the
      ``agentMetricsFrom`` peers (for ``/metrics``; every other call still needs the agent token);
    * ingest: every enabled push port from anywhere (WHIP: any UDP port too, for WebRTC media);
      RTMP, also the internal read path, from anywhere when RTMP pushes are enabled, else only
      from ``readers`` (this Livestream's transcoder and the recorder reading the ingest);
    * origin: ``http`` (playback) from anywhere, ``upload`` only from this Livestream's transcoder;
    * recorder: the agent port from this Livestream's origin too (it serves the recordings on the
      volume to viewers);
    * transcoder: nothing but the agent port (it only connects out); with WHEP, the agent port from this
      Livestream's origin (the viewers' offers) and any UDP port (WebRTC media).

    Egress is not restricted: pull sources, TURN servers and DNS are wherever the user says.
    """
    name = ls_meta["name"]
    role = roles.ROLES[role_of(key)]
    operator = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": config.operator_namespace}},
                "podSelector": {"matchLabels": dict(config.operator_pod_labels)}}
    rules: list[dict] = [{"from": [operator, *config.agent_metrics_from],
                          "ports": [_policy_port("agent", role)]}]
    if role is roles.INGEST:
        assert isinstance(agent, IngestConfig)
        public = [_policy_port(p, role) for p in ("rtmps", "srt", "whip") if p in agent.protocols]
        if "whip" in agent.protocols:
            public.append(dict(_WEBRTC_UDP))
        if "rtmp" in agent.protocols:
            public.insert(0, _policy_port("rtmp", role))
        else:
            rules.append({"from": _pods_of(name, readers), "ports": [_policy_port("rtmp", role)]})
        if public:
            rules.append({"ports": public})
    elif role is roles.ORIGIN:
        rules.append({"ports": [_policy_port("http", role)]})
        rules.append({"from": _pods_of(name, ["transcoder"]), "ports": [_policy_port("upload", role)]})
    elif role is roles.RECORDER:
        # The origin reads the finished recordings (GET /vod, agent token) to serve them to viewers.
        rules.append({"from": _pods_of(name, ["origin"]), "ports": [_policy_port("agent", role)]})
    elif role is roles.TRANSCODER and getattr(agent, "whep", False):
        rules.append({"from": _pods_of(name, ["origin"]), "ports": [_policy_port("agent", role)]})
        rules.append({"ports": [dict(_WEBRTC_UDP)]})
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta(ls_meta, child_name(name, key), key),
        "spec": {"podSelector": {"matchLabels": selector_labels(name, key)}, "policyTypes": ["Ingress"],
                 "ingress": rules},
    }


def _ingest_readers(agents: Mapping[str, BaseModel]) -> list[str]:
    """Keys of this Livestream's pods that read the ingest's RTMP (the transcoder always; the
    recorder when it records the source as pushed)."""
    recorder = agents.get("recorder")
    reads_ingest = isinstance(recorder, RecorderConfig) and recorder.source_url.startswith("rtmp")
    return ["transcoder", *(["recorder"] if reads_ingest else [])]


def _pvc_spec(size: str, storage_class: Optional[str]) -> dict:
    spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return spec


def render_dvr_pvc(ls_meta: Mapping, config: OperatorConfig) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(ls_meta, child_name(ls_meta["name"], "dvr"), "dvr"),
            "spec": _pvc_spec(config.dvr_volume_size, config.storage_class)}


def recordings_claim(name: str, effective: CallSettings) -> str:
    storage = effective.recording.storage
    return (storage.persistent_volume_claim if storage and storage.persistent_volume_claim
            else child_name(name, "recordings"))


def render_turn_secret(ls_meta: Mapping, turn_secret: str) -> dict:
    """``<ls>-turn``: the TURN server's shared secret for this Livestream's ingest pods. Re-rendered
    from the operator's file on every reconcile, so a rotated secret reaches them (the kubelet
    updates the mounted file; the ingest reads it per WHIP session)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(ls_meta, child_name(ls_meta["name"], "turn"), "turn"),
            "type": "Opaque", "data": {TURN_SECRET_KEY: base64.b64encode(turn_secret.encode()).decode("ascii")}}


def render_recordings_pvc(ls_meta: Mapping, effective: CallSettings, config: OperatorConfig) -> dict:
    """Created for the Livestream but not owned by it: deleting the Livestream keeps the recordings.

    Labelled for discovery only; none of ``child_selector``'s labels, so pruning never sees it.
    """
    storage = effective.recording.storage
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": child_name(ls_meta["name"], "recordings"), "namespace": ls_meta["namespace"],
            "labels": {"app.kubernetes.io/name": "onair", "app.kubernetes.io/part-of": "onair",
                       "app.kubernetes.io/component": "recordings", LABEL_RECORDINGS_OF: ls_meta["name"]},
        },
        "spec": _pvc_spec(storage.size, storage.storage_class_name or config.storage_class),
    }


# ----------------------------------------------------------------------------- entry point
def render_children(livestream: Mapping, calltype: Optional[CallType], config: OperatorConfig,
                    creds: Credentials, now: Optional[datetime] = None,
                    exposure: Optional[Mapping[str, IngestExposure]] = None,
                    turn_secret: Optional[str] = None,
                    resolved: Optional[Resolved] = None) -> RenderedChildren:
    """Render every child of ``livestream`` (the raw object: ``metadata`` with name, namespace, uid; ``spec``).

    ``now`` renders the member playback tokens (``onair.render.grants``): the controller always
    passes its clock; without it no ``<ls>-member-tokens`` Secret is rendered.

    Raises ``pydantic.ValidationError`` when the spec does not parse (``resolve`` reports that as
    a condition before this is called).

    ``turn_secret``: the content of ``config.whip_turn_secret_file`` (the controller reads it); it
    must be given when that is set and an ingest takes WHIP.

    ``resolved``: what ``onair.render.resolve.resolve`` made of this ``livestream`` and ``calltype``
    (the controller has it already: the spec is then not parsed, nor the settings merged, again).
    """
    meta = livestream["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    if resolved is not None and resolved.spec is not None and resolved.effective is not None:
        spec, effective = resolved.spec, resolved.effective
    else:
        spec = LivestreamSpec.model_validate(livestream["spec"])
        effective = effective_settings(calltype.spec.settings if calltype else None, spec.settings_override)
    # The publish URLs in the credentials Secret are the public ones once ``exposure`` (what
    # Kubernetes assigned to the ingest Services, per slot) is known.
    urls = render_urls(name, namespace, spec, effective, config, exposure)
    agents = render_agent_configs(name, namespace, spec, effective, config)

    objects: list[dict] = [
        creds_mod.render_credentials_secret(meta, creds, urls.ingest, labels=labels(name, "credentials"),
                                            owner_references=[owner_reference(meta)]),
    ]
    if any(getattr(a, "whip_turn_secret_file", None) or getattr(a, "whep_turn_secret_file", None)
           for a in agents.values()):
        if not turn_secret:
            raise ValueError(f"ONAIR_WHIP_TURN_SECRET_FILE {config.whip_turn_secret_file} gave no TURN secret to "
                             "hand to the ingest")
        objects.append(render_turn_secret(meta, turn_secret))
    for key, agent in agents.items():
        objects.append(render_configmap(meta, key, agent))
    objects.append(render_dvr_pvc(meta, config))
    for key, agent in agents.items():
        if role_of(key) == "ingest":
            objects.append(render_ingest_service(meta, key, agent, config))
    objects.append(render_origin_service(meta))
    if "recorder" in agents:
        objects.append(render_recorder_service(meta))
    if getattr(agents.get("transcoder"), "whep", False):
        objects.append(render_transcoder_service(meta))
    route = render_playback_route(meta, config)
    if route is not None:
        objects.append(route)
    if config.network_policies:
        readers = _ingest_readers(agents)
        for key, agent in agents.items():
            objects.append(render_network_policy(meta, key, agent, readers, config))
    for key, agent in agents.items():
        objects.append(render_deployment(meta, key, agent, effective, config))

    access = grants.member_access(spec, calltype)
    tokens_secret = None
    if now is not None:
        tokens_secret = grants.render_member_tokens_secret(meta, access.backstage, creds.playback_secret, now,
                                                           labels(name, grants.COMPONENT), [owner_reference(meta)])
    if tokens_secret is not None:
        objects.insert(1, tokens_secret)

    keep: list[dict] = []
    storage = effective.recording.storage
    if "recorder" in agents and not (storage and storage.persistent_volume_claim):
        keep.append(render_recordings_pvc(meta, effective, config))

    return RenderedChildren(
        objects=objects, keep=keep, effective=effective, urls=urls, agent_configs=agents,
        agent_selectors={key: selector_labels(name, key) for key in agents},
        credentials_secret=creds_mod.secret_name(name),
        members=access,
        member_tokens_secret=tokens_secret["metadata"]["name"] if tokens_secret else "",
        tokens_refresh_at=grants.tokens_refresh_at(now) if tokens_secret and now else None,
        spec=spec,
    )
