"""The URLs that go into status: where encoders push (per slot, as Kubernetes exposes the ingest
Services) and where viewers play."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from onair import endpoints, roles
from onair.api.livestream import IngestEndpoints, LivestreamSpec, PlaybackUrls
from onair.api.settings import CallSettings
from onair.api.operator_config import OperatorConfig
from onair.render.agent_configs import ingest_tls, is_pull
from onair.render.child_names import port_number
from onair.render.effective import sections


@dataclass(frozen=True)
class Urls:
    """What goes into status: push endpoints (no credentials) and playback URLs."""

    ingest: IngestEndpoints
    playback: PlaybackUrls


@dataclass(frozen=True)
class IngestExposure:
    """What Kubernetes assigned to one ingest Service (read from the Service and its pod by the
    controller): the nodePort of each port name, the load balancer's address, the pod's node."""

    node_ports: Mapping[str, int] = field(default_factory=dict)
    load_balancer: Optional[str] = None
    node_address: Optional[str] = None


def ingest_exposure(service: Mapping, host_ip: Optional[str]) -> IngestExposure:
    """From a Service object as the API server returns it, and the ingest pod's ``status.hostIP``."""
    ports = {
        p["name"]: p["nodePort"]
        for p in (service.get("spec") or {}).get("ports") or ()
        if p.get("name") and p.get("nodePort")
    }
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = next((i.get("hostname") or i.get("ip") for i in ingress if i.get("hostname") or i.get("ip")), None)
    return IngestExposure(node_ports=ports, load_balancer=address, node_address=host_ip)


def _service_port(port_name: str) -> int:
    return port_number(roles.INGEST, port_name)


def public_ingest(
    config: OperatorConfig, name: str, namespace: str, slot: str, exposure: Optional[IngestExposure] = None
) -> tuple[str, Callable[[str], int]]:
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


def render_urls(
    name: str,
    namespace: str,
    spec: LivestreamSpec,
    effective: CallSettings,
    config: OperatorConfig,
    exposure: Optional[Mapping[str, IngestExposure]] = None,
) -> Urls:
    """``exposure``: per slot (main/backup), what Kubernetes assigned to the ingest Service; without
    it a NodePort/LoadBalancer URL is the in-cluster one until the controller has read it."""
    parts = sections(effective)
    settings, b, shots = parts.ingest, parts.broadcasting, parts.screenshots
    # Set in DEFAULT_SETTINGS, so set in effective settings (a merge cannot unset a value).
    assert settings.protocols is not None and b.outputs is not None
    ingest: dict[str, str] = {}
    if not is_pull(spec):
        protocols = settings.protocols
        slots = ("main", "backup") if settings.backup else ("main",)
        for slot in slots:
            host, port = public_ingest(config, name, namespace, slot, (exposure or {}).get(slot))
            prefix = "" if slot == "main" else "backup_"
            if "rtmp" in protocols:
                ingest[prefix + "rtmp"] = endpoints.rtmp_push_url(host, port("rtmp"))
                if ingest_tls(config):
                    ingest[prefix + "rtmps"] = endpoints.rtmp_push_url(host, port("rtmps"), tls=True)
            if "srt" in protocols:
                ingest[prefix + "srt"] = endpoints.srt_push_url(host, port("srt"))
            if "whip" in protocols:
                ingest[prefix + "whip"] = endpoints.whip_url(host, port("whip"), tls=ingest_tls(config))
    playback: dict[str, str] = {}
    if b.mode != "disabled":
        all_urls = endpoints.playback_urls(config.playback_base_url(name, namespace))
        wanted = {
            "hlsCmaf": b.outputs.hls_cmaf,
            "hlsMpegts": b.outputs.hls_mpegts,
            "dash": b.outputs.dash,
            "player": True,
            "screenshot": shots.enabled,
            "whep": bool(b.outputs.webrtc),
        }
        playback = {key: url for key, url in all_urls.items() if wanted[key]}
    return Urls(ingest=IngestEndpoints(**ingest), playback=PlaybackUrls.model_validate(playback))
