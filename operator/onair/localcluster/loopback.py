"""How a Deployment's pod becomes a local process: the pure half of the pod runner.

Kubernetes gives every pod its own IP, its own filesystem and Service DNS names; a local process
has none of those. This module turns a Deployment (as the API server returns it) into a plan,
and a role config written for a pod into one that works on loopback:

* ``listenHost`` -> 127.0.0.1 (nothing a dev run starts is reachable from the network);
* every ``*Port`` -> a free local port (the runner allocates them, keyed by container port);
* every path under a volume mount -> the local directory standing in for that volume;
* every URL naming a cluster Service (``<svc>.<ns>.svc[.cluster.local]:<port>``) -> the local
  port of the container port that Service targets, found through the Service's selector exactly
  as kube-proxy would (so a renamed Service or port still resolves, and nothing is guessed
  from naming conventions). A Service that does not exist at all (a backup ingest not turned on)
  is given a reserved port by the runner, which the pod backing it later gets (``service_targets``).

No I/O, no clock: the runner (``podrunner``) does the API calls, files and processes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

LOCAL_HOST = "127.0.0.1"
CLUSTER_DOMAIN = "cluster.local"
LISTEN_KEYS = ("listenHost",)
# Ports a URL implies when it names none.
DEFAULT_PORTS = {"http": 80, "https": 443, "rtmp": 1935, "rtmps": 443, "ws": 80, "wss": 443}

ServiceTable = Mapping[tuple[str, str, int], int]
"""(namespace, service name, service port) -> local port of the container behind it."""


class PlanError(ValueError):
    """The Deployment uses something a local process cannot stand in for."""


@dataclass(frozen=True)
class ContainerPort:
    name: Optional[str]
    number: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    sub_path: Optional[str] = None


@dataclass(frozen=True)
class Volume:
    """One pod volume: ``kind`` is configMap, secret, emptyDir or persistentVolumeClaim."""

    name: str
    kind: str
    source: Optional[str] = None  # ConfigMap/Secret/claim name
    items: tuple[tuple[str, str], ...] = ()  # (key, path) for configMap/secret; empty = every key
    # A Secret or ConfigMap that may be missing (or lack keys): the pod starts with what there is,
    # as the kubelet does; the files appear once the object does.
    optional: bool = False


@dataclass(frozen=True)
class PodPlan:
    namespace: str
    name: str
    uid: str
    replicas: int
    args: tuple[str, ...]
    ports: tuple[ContainerPort, ...]
    mounts: tuple[Mount, ...]
    volumes: Mapping[str, Volume]
    labels: Mapping[str, str]
    grace_seconds: float
    fingerprint: str
    livestream: Optional[str] = None
    component: Optional[str] = None
    deleting: bool = False
    readiness: Optional[tuple[str, int]] = None  # readinessProbe httpGet (path, container port number)

    @property
    def wanted(self) -> bool:
        return self.replicas > 0 and not self.deleting

    def port_number(self, name: str) -> Optional[int]:
        for port in self.ports:
            if port.name == name:
                return port.number
        return None


_KNOWN_VOLUMES = ("configMap", "secret", "emptyDir", "persistentVolumeClaim")


def _volume(raw: Mapping[str, Any]) -> Volume:
    name = raw["name"]
    for kind in _KNOWN_VOLUMES:
        if kind in raw and raw[kind] is not None:
            src = raw[kind] or {}
            source = {
                "configMap": src.get("name"),
                "secret": src.get("secretName"),
                "persistentVolumeClaim": src.get("claimName"),
            }.get(kind)
            items = tuple((i["key"], i["path"]) for i in src.get("items") or ())
            return Volume(name, kind, source, items, optional=bool(src.get("optional")))
    kinds = sorted(k for k in raw if k != "name")
    raise PlanError(f"volume {name!r} is of a kind a local process cannot mount ({', '.join(kinds) or 'none'})")


def fingerprint(deployment: Mapping[str, Any]) -> str:
    """Changes exactly when a new pod would be rolled out: another object (uid) or another template."""
    meta = deployment.get("metadata") or {}
    template = (deployment.get("spec") or {}).get("template") or {}
    blob = json.dumps({"uid": meta.get("uid"), "template": template}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def pod_plan(deployment: Mapping[str, Any]) -> PodPlan:
    """The one container of ``deployment`` as something to run locally; ``PlanError`` if it cannot be."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    containers = pod_spec.get("containers") or []
    where = f"{deployment.get('kind') or 'Deployment'} {meta.get('namespace')}/{meta.get('name')}"
    if len(containers) != 1:
        raise PlanError(f"{where} has {len(containers)} containers; the local runner runs exactly one")
    container = containers[0]
    args = tuple(container.get("command") or ()) + tuple(container.get("args") or ())
    if not args:
        raise PlanError(f"{where}: the container has neither command nor args")
    volumes = {v.name: v for v in (_volume(raw) for raw in pod_spec.get("volumes") or ())}
    # A StatefulSet's claim templates are volumes of its pods too (``pod_plans`` names their claims).
    templates = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or ()}
    mounts = []
    for raw in container.get("volumeMounts") or ():
        if raw["name"] not in volumes and raw["name"] not in templates:
            raise PlanError(f"{where}: volumeMount {raw['name']!r} names no volume")
        mounts.append(Mount(raw["name"], raw["mountPath"].rstrip("/") or "/", raw.get("subPath") or None))
    ports = tuple(
        ContainerPort(p.get("name"), int(p["containerPort"]), p.get("protocol") or "TCP")
        for p in container.get("ports") or ()
    )
    readiness = None
    probe = (container.get("readinessProbe") or {}).get("httpGet")
    if probe:
        port = probe.get("port")
        number = next((p.number for p in ports if p.name == port), None) if isinstance(port, str) else int(port)
        if number is None:
            raise PlanError(f"{where}: readinessProbe port {port!r} is not a container port")
        readiness = (probe.get("path") or "/", number)
    replicas = spec.get("replicas")
    grace = pod_spec.get("terminationGracePeriodSeconds")
    meta_labels = meta.get("labels") or {}
    return PodPlan(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        replicas=1 if replicas is None else int(replicas),
        args=args,
        ports=ports,
        mounts=tuple(mounts),
        volumes=volumes,
        labels=labels,
        grace_seconds=30.0 if grace is None else float(grace),
        fingerprint=fingerprint(deployment),
        livestream=meta_labels.get("onair.dev/livestream"),
        component=meta_labels.get("app.kubernetes.io/component"),
        deleting=bool(meta.get("deletionTimestamp")),
        readiness=readiness,
    )


def pod_plans(workload: Mapping[str, Any]) -> list[PodPlan]:
    """The pods of a Deployment (one plan, however many replicas: the runner runs one) or of a
    StatefulSet: one plan per replica, ``<name>-<ordinal>``, each with its own claims from the
    ``volumeClaimTemplates`` (``<template>-<name>-<ordinal>``, as the statefulset controller names
    them) and its own address under the StatefulSet's headless Service (``service_targets``)."""
    plan = pod_plan(workload)
    if workload.get("kind") != "StatefulSet":
        return [plan]
    templates = [t["metadata"]["name"] for t in (workload.get("spec") or {}).get("volumeClaimTemplates") or ()]
    plans = []
    for ordinal in range(plan.replicas):
        name = f"{plan.name}-{ordinal}"
        claims = {t: Volume(t, "persistentVolumeClaim", f"{t}-{name}") for t in templates}
        for mount in plan.mounts:
            if mount.volume not in plan.volumes and mount.volume not in claims:
                raise PlanError(
                    f"StatefulSet {plan.namespace}/{plan.name}: volumeMount {mount.volume!r} names no volume"
                )
        plans.append(replace(plan, name=name, replicas=1, volumes={**plan.volumes, **claims}))
    return plans


def local_mounts(plan: PodPlan, volume_dirs: Mapping[str, str]) -> dict[str, str]:
    """Container path -> local path, given the local directory of every volume by name."""
    out: dict[str, str] = {}
    for mount in plan.mounts:
        base = volume_dirs[mount.volume].rstrip("/")
        out[mount.path] = f"{base}/{mount.sub_path}" if mount.sub_path else base
    return out


# ----------------------------------------------------------------------------- services
def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    # An empty selector selects nothing for Services (they then need manual Endpoints).
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_targets(
    services: Iterable[Mapping[str, Any]], plans: Iterable[PodPlan]
) -> dict[tuple[str, str, int], tuple[str, str, int]]:
    """Every Service port whose selector picks a planned pod -> (namespace, deployment, container
    port number) it targets. A Service selecting several pods targets the first in ``plans`` order
    (kube-proxy would balance)."""
    plans = list(plans)
    table: dict[tuple[str, str, int], tuple[str, str, int]] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ns = meta.get("namespace") or ""
        selector = spec.get("selector") or {}
        selected = [p for p in plans if p.namespace == ns and selector_matches(selector, p.labels)]
        if not selected:
            continue
        # A headless Service also names each pod: ``<pod>.<service>`` (a StatefulSet's stable names).
        named = [(meta["name"], selected[0])]
        if spec.get("clusterIP") == "None":
            named += [(f"{p.name}.{meta['name']}", p) for p in selected]
        for service, pod in named:
            for port in spec.get("ports") or ():
                target = port.get("targetPort", port["port"])
                number = pod.port_number(target) if isinstance(target, str) else int(target)
                if number is not None:
                    table[(ns, service, int(port["port"]))] = (ns, pod.name, number)
    return table


def service_table(
    services: Iterable[Mapping[str, Any]], plans: Iterable[PodPlan], local_ports: Mapping[tuple[str, str, int], int]
) -> dict[tuple[str, str, int], int]:
    """Every Service port whose selector picks a planned pod, mapped to that pod's local port.

    ``local_ports``: (namespace, deployment, container port number) -> local port.
    """
    return {
        key: local_ports[target] for key, target in service_targets(services, plans).items() if target in local_ports
    }


def service_port_of(address: str) -> Optional[tuple[str, str, int]]:
    """(namespace, service, port) of an address ``rewrite_url`` could not resolve (``host:port``)."""
    host, _, port = address.rpartition(":")
    svc = service_of_host(host, "")
    if svc is None or not port.isdigit():
        return None
    return svc[0], svc[1], int(port)


def service_of_host(host: str, namespace: str, cluster_domain: str = CLUSTER_DOMAIN) -> Optional[tuple[str, str]]:
    """(namespace, service) for a cluster Service DNS name, None for anything else.

    ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.<cluster domain>``, and ``<pod>.<svc>.<ns>.svc`` (one pod
    of a headless Service: the service is then ``<pod>.<svc>``); a bare ``<svc>`` or
    ``<svc>.<ns>`` would also resolve in a pod but is indistinguishable from a real host name,
    so it is left alone. ``namespace`` is unused today and kept for the bare-name case.
    """
    del namespace
    host = host.lower().rstrip(".")
    for suffix in (f".svc.{cluster_domain}", ".svc"):
        if host.endswith(suffix):
            parts = host[: -len(suffix)].split(".")
            if len(parts) == 2 and all(parts):
                return parts[1], parts[0]
            if len(parts) == 3 and all(parts):  # <pod>.<headless service>.<ns>: one pod of it
                return parts[2], f"{parts[0]}.{parts[1]}"
    return None


def rewrite_url(url: str, services: ServiceTable, namespace: str, host: str = LOCAL_HOST) -> tuple[str, Optional[str]]:
    """(rewritten URL, None) or (URL unchanged, the unresolvable service address) for Service URLs.

    Anything that is not a Service URL comes back unchanged with None.
    """
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError:
        return url, None
    if not parts.scheme or not hostname:
        return url, None
    svc = service_of_host(hostname, namespace)
    if svc is None:
        return url, None
    port = port if port is not None else DEFAULT_PORTS.get(parts.scheme.lower())
    local = services.get((svc[0], svc[1], port)) if port is not None else None
    if local is None:
        return url, f"{hostname}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{local}" if userinfo else f"{host}:{local}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), None


def rewrite_path(path: str, mounts: Mapping[str, str]) -> str:
    """``path`` under the deepest mount containing it, moved to that mount's local path."""
    best = None
    for container_path in mounts:
        if path == container_path or path.startswith(container_path.rstrip("/") + "/"):
            if best is None or len(container_path) > len(best):
                best = container_path
    if best is None:
        return path
    return mounts[best] + path[len(best) :]


# ----------------------------------------------------------------------------- configs
def config_ports(config: Any) -> set[int]:
    """Every port number a role config asks to listen on (``*Port`` keys, at any depth)."""
    found: set[int] = set()
    if isinstance(config, Mapping):
        for key, value in config.items():
            if isinstance(key, str) and key.endswith("Port") and isinstance(value, int) and not isinstance(value, bool):
                found.add(value)
            else:
                found |= config_ports(value)
    elif isinstance(config, list):
        for value in config:
            found |= config_ports(value)
    return found


@dataclass
class Rewritten:
    config: dict
    unresolved: list[str] = field(default_factory=list)  # Service addresses no local pod serves (yet)

    @property
    def ok(self) -> bool:
        return not self.unresolved


def rewrite_config(
    config: Mapping[str, Any],
    *,
    namespace: str,
    ports: Mapping[int, int],
    mounts: Mapping[str, str],
    services: ServiceTable,
    host: str = LOCAL_HOST,
) -> Rewritten:
    """A role config (camelCase, as in the ConfigMap) made to run as a local process.

    ``ports``: container port number -> local port; every ``*Port`` value must be in it
    (``config_ports`` lists them). ``mounts``: container path -> local path (``local_mounts``).
    The input is not modified.
    """
    unresolved: list[str] = []

    def walk(key: Optional[str], value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: walk(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(key, v) for v in value]
        if key in LISTEN_KEYS and isinstance(value, str):
            return host
        if key and key.endswith("Port") and isinstance(value, int) and not isinstance(value, bool):
            if value not in ports:
                raise KeyError(f"no local port for {key}={value}")
            return ports[value]
        if isinstance(value, str):
            if value.startswith("/"):
                return rewrite_path(value, mounts)
            if "://" in value:
                new, missing = rewrite_url(value, services, namespace, host)
                if missing:
                    unresolved.append(missing)
                return new
        return value

    out = walk(None, dict(config))
    # WebRTC gathers host candidates on non-loopback interfaces unless told otherwise; everything
    # here listens on loopback, so the candidates must too.
    if out.get("role") == "ingest" and not out.get("whipIceAddresses"):
        out["whipIceAddresses"] = [host]
    return Rewritten(out, unresolved)


def rewrite_args(args: Iterable[str], mounts: Mapping[str, str], python: str) -> list[str]:
    """The container's command line for this machine: ``onair ...`` runs as ``python -m onair.cli ...``
    (the interpreter the runner runs in, so an editable checkout is what runs), paths follow mounts."""
    args = list(args)
    if args and args[0] == "onair":
        args = [python, "-m", "onair.cli", *args[1:]]
    return args[:1] + [rewrite_path(a, mounts) if a.startswith("/") else a for a in args[1:]]


def local_endpoints(
    status: Mapping[str, Any], services: ServiceTable, namespace: str, host: str = LOCAL_HOST
) -> dict[str, dict[str, str]]:
    """A Livestream status' push and playback URLs (cluster DNS names) as local URLs.

    Only the URLs a local pod serves are returned: ``{"ingest": {...}, "playback": {...}}``.
    """
    out: dict[str, dict[str, str]] = {}
    for section in ("ingest", "playback"):
        urls = {}
        for key, url in (status.get(section) or {}).items():
            if isinstance(url, str):
                new, missing = rewrite_url(url, services, namespace, host)
                if missing is None and new != url:
                    urls[key] = new
        out[section] = urls
    return out
