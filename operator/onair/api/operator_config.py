"""Operator configuration: one plain pydantic model, read from ``ONAIR_*`` environment variables.

Every field ``foo_bar`` is set by ``ONAIR_FOO_BAR``; lists are comma-separated, ``resources``,
``operator_pod_labels`` and ``agent_metrics_from`` are JSON. Unset variables keep the documented defaults, which suit a single-cluster setup where
encoders and players reach the stream through cluster DNS (ClusterIP Services); a public setup
sets ``ONAIR_INGEST_SERVICE_TYPE`` (NodePort or LoadBalancer; the URLs then follow what Kubernetes
assigns) and ``ONAIR_PLAYBACK_ROUTE`` (an Ingress or HTTPRoute per Livestream), see the README's
"Ways in from outside the cluster".

URL templates are ``str.format`` strings with ``{name}`` (Livestream), ``{namespace}`` and, for the
ingest host, ``{service}`` (``<name>-ingest`` or ``<name>-ingest-backup``) and ``{slot}`` (main/backup).
The playback route's templates (host, path, TLS Secret) take ``{name}`` and ``{namespace}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from onair import roles
from onair.api.agent import ip_networks

ENV_PREFIX = "ONAIR_"
ROLE_KEYS = ("ingest", "transcoder", "origin", "recorder")


class Resources(BaseModel):
    """A container's ``resources`` (Kubernetes quantities)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)

    def manifest(self) -> dict:
        return {k: dict(sorted(v.items())) for k, v in (("requests", self.requests), ("limits", self.limits)) if v}


# Measured: a 1080p30 -> 720/480/360 x264 veryfast ladder needs ~1.1 cores in real time, so the
# transcoder requests 1.5 and may burst; the other roles copy bytes.
DEFAULT_RESOURCES: dict[str, Resources] = {
    "ingest": Resources(requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "1", "memory": "512Mi"}),
    "transcoder": Resources(requests={"cpu": "1500m", "memory": "512Mi"}, limits={"cpu": "4", "memory": "2Gi"}),
    "origin": Resources(requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "1", "memory": "512Mi"}),
    "recorder": Resources(requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "1", "memory": "512Mi"}),
}


DEFAULT_INGEST_HOST_TEMPLATE = "{service}.{namespace}.svc"


class OperatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = Field(roles.DEFAULT_IMAGE, description="The onair image every media pod runs.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secret names in each Livestream's namespace."
    )
    watch_namespaces: list[str] = Field(default_factory=list, description="Empty: every namespace (cluster-wide).")
    ingest_host_template: Optional[str] = Field(
        None,
        description="Host encoders push to, e.g. a wildcard DNS name pointed at the LoadBalancers. Unset: "
        "the LoadBalancer's address or, with NodePort, the address of the ingest pod's node once "
        "Kubernetes assigned them, and {service}.{namespace}.svc (cluster DNS) until then.",
    )
    playback_base_url_template: str = Field(
        "http://{name}-origin.{namespace}.svc:8081",
        description="Base of every playback URL in status (HLS, DASH, player, screenshot).",
    )
    ingest_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    ingest_tls_secret: Optional[str] = Field(
        None, description="kubernetes.io/tls Secret in the Livestream's namespace; enables RTMPS and HTTPS WHIP."
    )
    whip_ice_servers: list[str] = Field(
        default_factory=list,
        description="STUN/TURN URLs for WHIP sessions: announced to WHIP clients in the answer's "
        "Link headers (the addresses encoders outside the cluster reach) and used by "
        "the ingest unless ONAIR_WHIP_INGEST_ICE_SERVERS says otherwise.",
    )
    whip_ingest_ice_servers: Optional[list[str]] = Field(
        None,
        description="STUN/TURN URLs the ingest pods themselves use, e.g. the TURN Service's cluster DNS name "
        "(turn:onair-turn.onair-system.svc:3478?transport=udp). Unset: ONAIR_WHIP_ICE_SERVERS.",
    )
    whip_turn_secret_file: Optional[str] = Field(
        None,
        description="File holding the TURN server's shared secret (coturn static-auth-secret). The operator "
        "copies it into a <ls>-turn Secret for each Livestream's ingest, which mints time-limited "
        "TURN credentials per WHIP session (TURN REST API). Unset: TURN URLs carry no credentials.",
    )
    whip_turn_credential_ttl_seconds: int = Field(
        86400,
        ge=60,
        le=7 * 86400,
        description="Validity of each WHIP session's TURN credentials; the TURN server "
        "checks them on every allocation refresh, so they must outlast a show.",
    )
    storage_class: Optional[str] = Field(
        None, description="StorageClass of the PVCs the operator creates (recording.storage.storageClassName wins)."
    )
    dvr_volume_size: str = Field(
        "10Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$",
        description="Size of each <ls>-dvr PVC. Fixed, not derived from the DVR window: a PVC cannot shrink.",
    )
    resources: dict[str, Resources] = Field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    status_poll_interval_seconds: float = Field(5.0, gt=0, le=3600)
    network_policies: bool = Field(
        True,
        description="Give every media pod a NetworkPolicy: agent ports from the operator only, the origin's "
        "upload port from the transcoder only, push and playback ports from anywhere.",
    )
    operator_namespace: str = Field(
        "onair-system",
        min_length=1,
        max_length=63,
        description="Namespace of the operator's pod, which the NetworkPolicies let reach the agent ports.",
    )
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "onair", "app.kubernetes.io/component": "operator"},
        min_length=1,
        description="Labels of the operator's pod (JSON), which the NetworkPolicies select it by.",
    )
    agent_metrics_from: list[dict] = Field(
        default_factory=list,
        description="NetworkPolicy peers (JSON list) also let in on the agent port, for GET /metrics (e.g. "
        "Prometheus' namespace); every other agent call still needs the agent token.",
    )
    metrics_port: Optional[int] = Field(
        None,
        ge=1,
        le=65535,
        description="Serve the operator's own Prometheus metrics (GET /metrics) on this port; unset: none.",
    )
    # --- ways in from outside the cluster: playback
    playback_route: Literal["none", "ingress", "httproute"] = Field(
        "none",
        description="Render a route per Livestream to the origin's public port: a networking.k8s.io/v1 "
        "Ingress or a Gateway API HTTPRoute. The route's URL then goes into status.playback.",
    )
    playback_host_template: Optional[str] = Field(
        None,
        description="Host of each Livestream's route, with {name} {namespace}, e.g. "
        "{name}.{namespace}.live.example.com (one wildcard DNS name for all).",
    )
    playback_path_template: str = Field(
        "/",
        description="Path prefix of each Livestream's route, with {name} {namespace}, e.g. /{namespace}/{name}. "
        "The origin serves at /, so a prefix needs the HTTPRoute's URLRewrite (Ingress cannot "
        "rewrite portably): with an Ingress only / is accepted.",
    )
    playback_tls_secret_template: Optional[str] = Field(
        None,
        description="Ingress only: kubernetes.io/tls Secret (in the Livestream's namespace, with {name} "
        "{namespace}) the Ingress controller terminates TLS with; URLs become https.",
    )
    playback_https: bool = Field(
        False,
        description="The public URLs are https although no Ingress TLS Secret is set: TLS terminates at the "
        "Gateway's listener, a load balancer or a CDN in front.",
    )
    playback_ingress_class: Optional[str] = Field(None, description="spec.ingressClassName of each Ingress.")
    playback_route_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations (JSON) of each Ingress/HTTPRoute, e.g. cert-manager's."
    )
    playback_gateway_name: Optional[str] = Field(None, description="The Gateway every HTTPRoute attaches to.")
    playback_gateway_namespace: Optional[str] = Field(
        None,
        description="The Gateway's namespace (default: the Livestream's); its listener must allow routes "
        "from the Livestreams' namespaces (allowedRoutes.namespaces.from: All or Selector).",
    )
    playback_gateway_section_name: Optional[str] = Field(None, description="The Gateway listener to attach to.")
    playback_trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs (comma-separated) of the proxies viewers reach the origins through: "
        "the ingress controller's or gateway's pods, a CDN's egress. Each origin holds one client address to a "
        "quarter of its connections (4,096 of 16,384), and every LL-HLS viewer keeps one open; connections "
        "from these addresses are held only to the total.",
    )
    # --- ways in from outside the cluster: ingest
    ingest_external_traffic_policy: Optional[Literal["Cluster", "Local"]] = Field(
        None,
        description="externalTrafficPolicy of NodePort/LoadBalancer ingest Services. Local keeps the "
        "encoder's source address (SRT and WebRTC see the real peer) and avoids a second hop; "
        "only nodes running the ingest pod answer.",
    )
    ingest_service_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations (JSON) of the ingest Services, e.g. a cloud's load "
        "balancer type or a MetalLB address pool.",
    )
    ingest_node_ports: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Fixed nodePorts (JSON) per slot and port name, e.g. "
        '{"main": {"rtmp": 30935, "srt": 30900}}; one Livestream per '
        "cluster can own a given nodePort. Unset ports are allocated by Kubernetes.",
    )

    @field_validator("playback_trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        ip_networks(value)
        return value

    @field_validator("resources")
    @classmethod
    def _fill_roles(cls, value: dict[str, Resources]) -> dict[str, Resources]:
        unknown = set(value) - set(ROLE_KEYS)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {list(ROLE_KEYS)}")
        return {**DEFAULT_RESOURCES, **value}

    @field_validator("ingest_host_template", "playback_base_url_template")
    @classmethod
    def _template_formats(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        try:
            value.format(name="n", namespace="ns", service="n-ingest", slot="main")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{value!r} is not a valid template (use {{name}}, {{namespace}}, {{service}}, {{slot}}): {exc}"
            ) from None
        return value

    @field_validator("agent_metrics_from")
    @classmethod
    def _peers(cls, value: list[dict]) -> list[dict]:
        allowed = {"podSelector", "namespaceSelector", "ipBlock"}
        for peer in value:
            if not peer or set(peer) - allowed:
                raise ValueError(
                    f"{peer!r} is not a NetworkPolicy peer: use podSelector, namespaceSelector "
                    'and/or ipBlock, e.g. [{"namespaceSelector": {"matchLabels": '
                    '{"kubernetes.io/metadata.name": "monitoring"}}}]'
                )
        return value

    @field_validator("ingest_node_ports")
    @classmethod
    def _node_ports(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        from onair.roles import INGEST  # the port names the ingest Service can carry

        names = {p.name for p in INGEST.ports if p.name != "agent"}
        for slot, ports in value.items():
            if slot not in ("main", "backup"):
                raise ValueError(f'slot {slot!r}: use "main" and/or "backup"')
            for port, number in ports.items():
                if port not in names:
                    raise ValueError(f"{slot}.{port}: the ingest Service's ports are {sorted(names)}")
                if not 1 <= number <= 65535:
                    raise ValueError(
                        f"{slot}.{port}: {number} is not a port (the default nodePort range is 30000-32767)"
                    )
        return value

    @field_validator("playback_host_template", "playback_path_template", "playback_tls_secret_template")
    @classmethod
    def _route_template_formats(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        try:
            value.format(name="n", namespace="ns")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a valid template (use {{name}} and {{namespace}}): {exc}") from None
        return value

    @model_validator(mode="after")
    def _route_complete(self) -> "OperatorConfig":
        if self.playback_route == "none":
            return self
        if not self.playback_host_template:
            raise ValueError(
                f"ONAIR_PLAYBACK_ROUTE={self.playback_route} needs ONAIR_PLAYBACK_HOST_TEMPLATE (the public host "
                "of each Livestream's route, e.g. {name}.{namespace}.live.example.com)"
            )
        if not self.playback_path_template.startswith("/"):
            raise ValueError(f"ONAIR_PLAYBACK_PATH_TEMPLATE {self.playback_path_template!r} must start with /")
        if self.playback_route == "ingress" and self.playback_path_template.rstrip("/") != "":
            raise ValueError(
                "ONAIR_PLAYBACK_PATH_TEMPLATE must be / with ONAIR_PLAYBACK_ROUTE=ingress: the origin serves at / "
                "and an Ingress cannot strip a prefix portably. Give each Livestream its own host "
                "(ONAIR_PLAYBACK_HOST_TEMPLATE {name}.{namespace}.live.example.com) or use httproute, "
                "whose URLRewrite strips the prefix."
            )
        if self.playback_route == "httproute" and not self.playback_gateway_name:
            raise ValueError(
                "ONAIR_PLAYBACK_ROUTE=httproute needs ONAIR_PLAYBACK_GATEWAY_NAME (the Gateway the routes attach to)"
            )
        if self.playback_route == "httproute" and self.playback_tls_secret_template:
            raise ValueError(
                "ONAIR_PLAYBACK_TLS_SECRET_TEMPLATE is for Ingress: with an HTTPRoute TLS terminates at the "
                "Gateway's listener; set ONAIR_PLAYBACK_HTTPS=true instead"
            )
        return self

    def read_turn_secret(self) -> Optional[str]:
        """The TURN shared secret from ``whip_turn_secret_file`` (None when unset); a file that is
        missing or empty raises ValueError saying what to fix."""
        if not self.whip_turn_secret_file:
            return None
        try:
            value = Path(self.whip_turn_secret_file).read_text().strip()
        except OSError as exc:
            raise ValueError(
                f"ONAIR_WHIP_TURN_SECRET_FILE {self.whip_turn_secret_file} cannot be read ({exc.strerror}): "
                "mount the TURN server's shared secret there (the chart does with turn.enabled)"
            ) from None
        if not value:
            raise ValueError(
                f"ONAIR_WHIP_TURN_SECRET_FILE {self.whip_turn_secret_file} is empty: it must hold the TURN "
                "server's static-auth-secret"
            )
        return value

    def playback_route_host(self, name: str, namespace: str) -> str:
        assert self.playback_host_template is not None
        return self.playback_host_template.format(name=name, namespace=namespace)

    def playback_route_path(self, name: str, namespace: str) -> str:
        """The route's path prefix, without a trailing slash ("" for the root)."""
        return self.playback_path_template.format(name=name, namespace=namespace).rstrip("/")

    def playback_tls_secret(self, name: str, namespace: str) -> Optional[str]:
        if self.playback_tls_secret_template is None:
            return None
        return self.playback_tls_secret_template.format(name=name, namespace=namespace)

    def resources_for(self, role: str) -> Resources:
        return self.resources.get(role, DEFAULT_RESOURCES[role])

    def ingest_host(self, name: str, namespace: str, slot: str = "main") -> str:
        service = f"{name}-ingest" if slot == "main" else f"{name}-ingest-backup"
        return (self.ingest_host_template or DEFAULT_INGEST_HOST_TEMPLATE).format(
            name=name, namespace=namespace, service=service, slot=slot
        )

    def playback_base_url(self, name: str, namespace: str) -> str:
        """Where players reach the origin: the route's public URL when a route is rendered, else the template."""
        if self.playback_route != "none":
            scheme = "https" if self.playback_https or self.playback_tls_secret_template else "http"
            host = self.playback_route_host(name, namespace)
            return f"{scheme}://{host}{self.playback_route_path(name, namespace)}"
        return self.internal_playback_base_url(name, namespace)

    def internal_playback_base_url(self, name: str, namespace: str) -> str:
        return self.playback_base_url_template.format(
            name=name, namespace=namespace, service=f"{name}-origin", slot="main"
        )

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "OperatorConfig":
        """Build from ``ONAIR_*`` variables; a bad value raises ``ValueError`` naming the variable."""
        environ = os.environ if environ is None else environ
        raw: dict[str, Any] = {}  # parsed JSON: validated by the model below
        for field in cls.model_fields:
            var = ENV_PREFIX + field.upper()
            if var in environ and environ[var] != "":
                raw[field] = _parse(var, environ[var], field)
        # ONAIR_RESOURCES_TRANSCODER='{"limits": {"cpu": "6"}}' overrides one role at a time.
        for role in ROLE_KEYS:
            var = f"{ENV_PREFIX}RESOURCES_{role.upper()}"
            if environ.get(var):
                resources = dict(raw.get("resources") or {})
                resources[role] = _parse(var, environ[var], "resources")
                raw["resources"] = resources
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            lines = [
                f"{ENV_PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}" if err["loc"] else err["msg"]
                for err in exc.errors()
            ]
            raise ValueError("invalid operator configuration:\n  " + "\n  ".join(lines)) from None


_LIST_FIELDS = {
    "image_pull_secrets",
    "watch_namespaces",
    "whip_ice_servers",
    "whip_ingest_ice_servers",
    "playback_trusted_proxies",
}
_JSON_EXAMPLES = {
    "playback_route_annotations": '{"cert-manager.io/cluster-issuer": "letsencrypt"}',
    "ingest_service_annotations": '{"metallb.universe.tf/address-pool": "public"}',
    "ingest_node_ports": '{"main": {"rtmp": 30935, "srt": 30900}}',
    "resources": '{"requests": {"cpu": "1"}}',
    "operator_pod_labels": '{"app.kubernetes.io/name": "onair", "app.kubernetes.io/component": "operator"}',
    "agent_metrics_from": '[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]',
}


def _parse(var: str, value: str, field: str) -> Any:
    if field in _LIST_FIELDS:
        return [item.strip() for item in value.split(",") if item.strip()]
    if field in _JSON_EXAMPLES:
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{var} must be JSON, e.g. '{_JSON_EXAMPLES[field]}': {exc}") from None
    return value
