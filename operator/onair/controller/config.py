"""Operator configuration: one plain pydantic model, read from ``ONAIR_*`` environment variables.

Every field ``foo_bar`` is set by ``ONAIR_FOO_BAR``; lists are comma-separated, ``resources``,
``operator_pod_labels`` and ``agent_metrics_from`` are JSON. Unset variables keep the documented defaults, which suit a single-cluster setup where
encoders and players reach the stream through cluster DNS (ClusterIP Services); a public setup
sets ``ONAIR_INGEST_SERVICE_TYPE=LoadBalancer``, ``ONAIR_INGEST_HOST_TEMPLATE`` and
``ONAIR_PLAYBACK_BASE_URL_TEMPLATE`` to the names its DNS/Ingress serves.

URL templates are ``str.format`` strings with ``{name}`` (Livestream), ``{namespace}`` and, for the
ingest host, ``{service}`` (``<name>-ingest`` or ``<name>-ingest-backup``) and ``{slot}`` (main/backup).
"""
from __future__ import annotations

import json
import os
from typing import Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from onair import roles

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


class OperatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = Field(roles.DEFAULT_IMAGE, description="The onair image every media pod runs.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secret names in each Livestream's namespace.")
    watch_namespaces: list[str] = Field(default_factory=list, description="Empty: every namespace (cluster-wide).")
    ingest_host_template: str = Field(
        "{service}.{namespace}.svc",
        description="Host encoders push to; with LoadBalancer Services point a wildcard DNS name at them.")
    playback_base_url_template: str = Field(
        "http://{name}-origin.{namespace}.svc:8081",
        description="Base of every playback URL in status (HLS, DASH, player, screenshot).")
    ingest_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    ingest_tls_secret: Optional[str] = Field(
        None, description="kubernetes.io/tls Secret in the Livestream's namespace; enables RTMPS and HTTPS WHIP.")
    whip_ice_servers: list[str] = Field(default_factory=list, description="STUN/TURN URLs for WHIP sessions.")
    storage_class: Optional[str] = Field(
        None, description="StorageClass of the PVCs the operator creates (recording.storage.storageClassName wins).")
    dvr_volume_size: str = Field(
        "10Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$",
        description="Size of each <ls>-dvr PVC. Fixed, not derived from the DVR window: a PVC cannot shrink.")
    resources: dict[str, Resources] = Field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    status_poll_interval_seconds: float = Field(5.0, gt=0, le=3600)
    network_policies: bool = Field(
        True, description="Give every media pod a NetworkPolicy: agent ports from the operator only, the origin's "
                          "upload port from the transcoder only, push and playback ports from anywhere.")
    operator_namespace: str = Field(
        "onair-system", min_length=1, max_length=63,
        description="Namespace of the operator's pod, which the NetworkPolicies let reach the agent ports.")
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "onair", "app.kubernetes.io/component": "operator"},
        min_length=1, description="Labels of the operator's pod (JSON), which the NetworkPolicies select it by.")
    agent_metrics_from: list[dict] = Field(
        default_factory=list,
        description="NetworkPolicy peers (JSON list) also let in on the agent port, for GET /metrics (e.g. "
                    "Prometheus' namespace); every other agent call still needs the agent token.")

    @field_validator("resources")
    @classmethod
    def _fill_roles(cls, value: dict[str, Resources]) -> dict[str, Resources]:
        unknown = set(value) - set(ROLE_KEYS)
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {list(ROLE_KEYS)}")
        return {**DEFAULT_RESOURCES, **value}

    @field_validator("ingest_host_template", "playback_base_url_template")
    @classmethod
    def _template_formats(cls, value: str) -> str:
        try:
            value.format(name="n", namespace="ns", service="n-ingest", slot="main")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a valid template (use {{name}}, {{namespace}}, {{service}}, {{slot}}): {exc}")
        return value

    @field_validator("agent_metrics_from")
    @classmethod
    def _peers(cls, value: list[dict]) -> list[dict]:
        allowed = {"podSelector", "namespaceSelector", "ipBlock"}
        for peer in value:
            if not peer or set(peer) - allowed:
                raise ValueError(f"{peer!r} is not a NetworkPolicy peer: use podSelector, namespaceSelector "
                                 "and/or ipBlock, e.g. [{\"namespaceSelector\": {\"matchLabels\": "
                                 "{\"kubernetes.io/metadata.name\": \"monitoring\"}}}]")
        return value

    def resources_for(self, role: str) -> Resources:
        return self.resources.get(role, DEFAULT_RESOURCES[role])

    def ingest_host(self, name: str, namespace: str, slot: str = "main") -> str:
        service = f"{name}-ingest" if slot == "main" else f"{name}-ingest-backup"
        return self.ingest_host_template.format(name=name, namespace=namespace, service=service, slot=slot)

    def playback_base_url(self, name: str, namespace: str) -> str:
        return self.playback_base_url_template.format(name=name, namespace=namespace, service=f"{name}-origin", slot="main")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "OperatorConfig":
        """Build from ``ONAIR_*`` variables; a bad value raises ``ValueError`` naming the variable."""
        environ = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        for field, info in cls.model_fields.items():
            var = ENV_PREFIX + field.upper()
            if var in environ and environ[var] != "":
                raw[field] = _parse(var, environ[var], field)
        # ONAIR_RESOURCES_TRANSCODER='{"limits": {"cpu": "6"}}' overrides one role at a time.
        for role in ROLE_KEYS:
            var = f"{ENV_PREFIX}RESOURCES_{role.upper()}"
            if environ.get(var):
                resources = dict(raw.get("resources") or {})  # type: ignore[arg-type]
                resources[role] = _parse(var, environ[var], "resources")
                raw["resources"] = resources
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            lines = [f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc'][:1]).upper()}: {err['msg']}" for err in exc.errors()]
            raise ValueError("invalid operator configuration:\n  " + "\n  ".join(lines)) from None


_LIST_FIELDS = {"image_pull_secrets", "watch_namespaces", "whip_ice_servers"}
_JSON_EXAMPLES = {
    "resources": '{"requests": {"cpu": "1"}}',
    "operator_pod_labels": '{"app.kubernetes.io/name": "onair", "app.kubernetes.io/component": "operator"}',
    "agent_metrics_from": '[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]',
}


def _parse(var: str, value: str, field: str) -> object:
    if field in _LIST_FIELDS:
        return [item.strip() for item in value.split(",") if item.strip()]
    if field in _JSON_EXAMPLES:
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{var} must be JSON, e.g. '{_JSON_EXAMPLES[field]}': {exc}") from None
    return value
