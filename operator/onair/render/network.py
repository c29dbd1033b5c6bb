"""How each agent's pod is reached and by whom: the ingest and origin Services, the recorder's
Service for the origin, the playback Ingress/HTTPRoute, and the NetworkPolicies."""

from __future__ import annotations

from typing import Mapping, Optional

from pydantic import BaseModel

from onair import roles
from onair.api.agent import IngestConfig, RecorderConfig
from onair.api.operator_config import OperatorConfig
from onair.render.child_names import (
    ORIGIN_PEERS_KEY,
    child_meta,
    child_name,
    port_number,
    role_of,
    selector_labels,
    slot_of,
)


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
        "ports": [
            {
                "name": p.name,
                "port": p.number,
                "targetPort": p.name,
                "protocol": p.protocol,
                **({"nodePort": fixed[p.name]} if p.name in fixed else {}),
            }
            for p in ports
        ],
    }
    if external and config.ingest_external_traffic_policy:
        spec["externalTrafficPolicy"] = config.ingest_external_traffic_policy
    metadata = child_meta(ls_meta, child_name(ls_meta["name"], key), key)
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
    metadata = child_meta(ls_meta, child_name(name, PLAYBACK_ROUTE_KEY), PLAYBACK_ROUTE_KEY)
    if config.playback_route_annotations:
        metadata["annotations"] = dict(sorted(config.playback_route_annotations.items()))
    if config.playback_route == "ingress":
        spec: dict = {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": origin, "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ]
        }
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
    rule: dict = {
        "matches": [{"path": {"type": "PathPrefix", "value": prefix or "/"}}],
        "backendRefs": [{"group": "", "kind": "Service", "name": origin, "port": port_number(roles.ORIGIN, "http")}],
    }
    if prefix:
        rule["filters"] = [
            {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
        ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata,
        "spec": {"parentRefs": [parent], "hostnames": [host], "rules": [rule]},
    }


def render_origin_service(ls_meta: Mapping) -> dict:
    """Playback (``http``, what an Ingress or CDN points at) and the transcoder's ``upload`` port.

    ClusterIP, so the upload port never leaves the cluster; the agent port is not listed at all
    (the operator calls the pod).
    """
    ports = [p for p in roles.ORIGIN.ports if p.name in ("http", "upload")]
    return _service(
        ls_meta,
        "origin",
        [{"name": p.name, "port": p.number, "targetPort": p.name, "protocol": p.protocol} for p in ports],
    )


def render_origin_peers_service(ls_meta: Mapping) -> dict:
    """Headless: a DNS name per origin replica (``<ls>-origin-<i>.<ls>-origin-peers``) for the
    transcoder's uploads to each and the replicas' copies from one another. Not-ready pods are
    published too: a starting replica is fed uploads while it copies a peer, before it is Ready."""
    upload = next(p for p in roles.ORIGIN.ports if p.name == "upload")
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(ls_meta, child_name(ls_meta["name"], ORIGIN_PEERS_KEY), ORIGIN_PEERS_KEY),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(ls_meta["name"], "origin"),
            "ports": [{"name": upload.name, "port": upload.number, "targetPort": upload.name, "protocol": "TCP"}],
        },
    }


def render_recorder_service(ls_meta: Mapping) -> dict:
    """The recorder's agent port, for the origin alone (the NetworkPolicy): it reads the finished
    recordings on the volume (``GET /vod/<file>``, agent token) to serve them to viewers."""
    return _service(ls_meta, "recorder", [_agent_port()])


def render_transcoder_service(ls_meta: Mapping) -> dict:
    """The transcoder's agent port, for the origin alone (the NetworkPolicy): viewers' WHEP offers, which the
    origin lets in under the playback rules and passes on with the agent token. WebRTC media itself goes
    between the viewer and the pod (ICE), not through a Service."""
    return _service(ls_meta, "transcoder", [_agent_port()])


def _agent_port() -> dict:
    return {"name": "agent", "port": roles.AGENT_PORT, "targetPort": "agent", "protocol": "TCP"}


def _service(ls_meta: Mapping, role: str, ports: list[dict]) -> dict:
    """A ClusterIP Service of the Livestream's ``role`` pod, exposing ``ports`` only."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(ls_meta, child_name(ls_meta["name"], role), role),
        "spec": {"type": "ClusterIP", "selector": selector_labels(ls_meta["name"], role), "ports": ports},
    }


# WebRTC (WHIP, WHEP) media arrives on UDP ports the ICE stack picks at random.
_WEBRTC_UDP = {"protocol": "UDP", "port": 1024, "endPort": 65535}


def _policy_port(port_name: str, role: roles.MediaRole) -> dict:
    port = next(p for p in role.ports if p.name == port_name)
    return {"protocol": port.protocol, "port": port.name}


def _pods_of(name: str, keys: list[str]) -> list[dict]:
    return [{"podSelector": {"matchLabels": selector_labels(name, key)}} for key in keys]


def render_network_policy(
    ls_meta: Mapping, key: str, agent: BaseModel, readers: list[str], config: OperatorConfig
) -> dict:
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
    role = roles.MEDIA_ROLES[role_of(key)]
    operator = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": config.operator_namespace}},
        "podSelector": {"matchLabels": dict(config.operator_pod_labels)},
    }
    rules: list[dict] = [{"from": [operator, *config.agent_metrics_from], "ports": [_policy_port("agent", role)]}]
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
        # Replicas copy each other's DVR on the upload port (agent/origin/replicas.py).
        uploaders = ["transcoder", "origin"] if getattr(agent, "peer_upload_urls", None) else ["transcoder"]
        rules.append({"from": _pods_of(name, uploaders), "ports": [_policy_port("upload", role)]})
    elif role is roles.RECORDER:
        # The origin reads the finished recordings (GET /vod, agent token) to serve them to viewers.
        rules.append({"from": _pods_of(name, ["origin"]), "ports": [_policy_port("agent", role)]})
    elif role is roles.TRANSCODER and getattr(agent, "whep", False):
        rules.append({"from": _pods_of(name, ["origin"]), "ports": [_policy_port("agent", role)]})
        rules.append({"ports": [dict(_WEBRTC_UDP)]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_meta(ls_meta, child_name(name, key), key),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(name, key)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


def ingest_readers(agents: Mapping[str, BaseModel]) -> list[str]:
    """Keys of this Livestream's pods that read the ingest's RTMP (the transcoder always; the
    recorder when it records the source as pushed)."""
    recorder = agents.get("recorder")
    reads_ingest = isinstance(recorder, RecorderConfig) and recorder.source_url.startswith("rtmp")
    return ["transcoder", *(["recorder"] if reads_ingest else [])]
