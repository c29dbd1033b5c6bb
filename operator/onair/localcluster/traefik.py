"""Traefik on the local node: the cluster's HTTP entry point, as a platform engineer installs one.

One Traefik (built from its Go module by `build`, imaged by `images`) serves both ways a cluster
routes viewers in: `networking.k8s.io/v1` Ingress of IngressClass ``traefik``, and the Gateway
API (GatewayClass ``traefik``, Gateway ``traefik/web`` whose HTTP listener takes routes from
every namespace). It runs as a Deployment under its own ServiceAccount and ClusterRole, and its
Service is of type LoadBalancer: `install` plays the part of the cluster's load-balancer
controller (what k3s's ServiceLB or MetalLB do) and gives it the node's address, so kube-proxy
answers ``http://<node address>:80`` with Traefik, and the Ingress and Gateway statuses name
that address, as they would in a cloud.

The host reaches it the way a viewer's machine would once DNS points the public names at the
load balancer; nothing here leaves the node's network namespace.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from onair.kube import KINDS, POD, Kind, SyncKube

from . import apply, build, images
from .cluster import ClusterError
from .node import binding_document, deployment_document

NAMESPACE = "traefik"
NAME = "traefik"
INGRESS_CLASS = "traefik"
GATEWAY_CLASS = "traefik"
GATEWAY_NAME = "web"
GATEWAY_LISTENER = "http"
INGRESS_CONTROLLER = "traefik.io/ingress-controller"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
# The public port, on the load balancer's (the node's) address.
HTTP_PORT = 80
# Traefik's entry point inside the pod: unprivileged, so it runs as non-root with no capability.
# A Gateway listener binds to the entry point whose address has the listener's port, so the
# Gateway's listener says 8000 too (as in Traefik's own Helm chart).
WEB_PORT = 8000
PING_PORT = 9000
USER = 65532


class TraefikError(ClusterError):
    pass


@dataclasses.dataclass(frozen=True)
class Entrypoint:
    """Where Traefik was installed and how routes attach to it."""

    address: str  # the load balancer's address: the node's
    port: int = HTTP_PORT
    namespace: str = NAMESPACE
    ingress_class: str = INGRESS_CLASS
    gateway_name: str = GATEWAY_NAME
    gateway_listener: str = GATEWAY_LISTENER

    @property
    def url(self) -> str:
        return f"http://{self.address}" + ("" if self.port == 80 else f":{self.port}")


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "traefik", **labels}}
    if namespace:
        m["namespace"] = namespace
    return m


def cluster_role_rules() -> list[dict[str, Any]]:
    """What the Ingress and Gateway providers read and the statuses they write (Traefik's
    documented RBAC for both, less the OTel pod lookup it does not use here). The Ingress
    provider also watches Nodes and waits for that informer: without the rule it never
    processes an Ingress, although the pod is Ready."""
    read = ["get", "list", "watch"]
    gateway_kinds = [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "grpcroutes",
        "tcproutes",
        "tlsroutes",
        "referencegrants",
        "backendtlspolicies",
    ]
    return [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["services", "secrets", "configmaps", "nodes"], "verbs": read},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": read},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": gateway_kinds, "verbs": read},
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": [f"{k}/status" for k in gateway_kinds],
            "verbs": ["update"],
        },
    ]


def traefik_args() -> list[str]:
    published = f"{NAMESPACE}/{NAME}"
    return [
        f"--entryPoints.web.address=:{WEB_PORT}",
        f"--entryPoints.traefik.address=:{PING_PORT}",
        "--ping=true",
        "--providers.kubernetesingress=true",
        # Ingress status and Gateway status name the load balancer's address, copied from the
        # Service (which `install` publishes), as with any cloud load balancer.
        f"--providers.kubernetesingress.ingressendpoint.publishedservice={published}",
        "--providers.kubernetesgateway=true",
        f"--providers.kubernetesgateway.statusaddress.service.name={NAME}",
        f"--providers.kubernetesgateway.statusaddress.service.namespace={NAMESPACE}",
        # No calls home: the node has no route out, and a test cluster should not try.
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
        "--accesslog=true",
    ]


def documents(image: str) -> list[dict[str, Any]]:
    """Everything `install` applies but the Gateway API CRDs."""
    ns = NAMESPACE
    labels = {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": NAME}
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": restricted}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, ns)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(f"{ns}-{NAME}"),
            "rules": cluster_role_rules(),
        },
        binding_document("ClusterRoleBinding", _meta(f"{ns}-{NAME}"), "ClusterRole", f"{ns}-{NAME}", NAME, ns),
        deployment_document(
            _meta(NAME, ns),
            labels,
            {
                "serviceAccountName": NAME,
                "terminationGracePeriodSeconds": 5,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": USER,
                    "runAsGroup": USER,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "traefik",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "args": traefik_args(),
                        "ports": [
                            {"name": "web", "containerPort": WEB_PORT, "protocol": "TCP"},
                            {"name": "ping", "containerPort": PING_PORT, "protocol": "TCP"},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/ping", "port": "ping"}, "periodSeconds": 1},
                        "livenessProbe": {"httpGet": {"path": "/ping", "port": "ping"}, "periodSeconds": 10},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        "resources": {
                            "requests": {"cpu": "20m", "memory": "64Mi"},
                            "limits": {"memory": "512Mi"},
                        },
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(NAME, ns),
            "spec": {
                "type": "LoadBalancer",
                "selector": labels,
                "ports": [{"name": "web", "port": HTTP_PORT, "targetPort": "web", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": _meta(INGRESS_CLASS),
            "spec": {"controller": INGRESS_CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": _meta(GATEWAY_CLASS),
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": _meta(GATEWAY_NAME, ns),
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": GATEWAY_LISTENER,
                        "protocol": "HTTP",
                        "port": WEB_PORT,
                        # Livestreams live in their users' namespaces; their HTTPRoutes attach from there.
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


GATEWAY = Kind("gateway.networking.k8s.io/v1", "Gateway", "gateways")


def install(node, *, timeout: float = 120.0, log: Callable[[str], None] | None = None) -> Entrypoint:
    """Install Traefik on a started `node.Node` and wait until it routes; returns where it answers."""
    say = log or (lambda m: print(f"[localcluster.traefik] {m}", flush=True))
    if node.cluster is None:
        raise TraefikError("the node is not started: install Traefik after LocalNodeCluster.start()")
    t0 = time.monotonic()
    build.ensure_built(["traefik"])
    crds: list[Path] = build.gateway_api_crds()
    image = images.traefik()
    node.ctr("images", "import", str(images.ensure_archive(image)), timeout=300)
    kube = apply.client(node.cluster.kubeconfig)
    try:
        apply.apply_files(kube, crds)
        apply.apply_documents(kube, documents(image.ref))
        _publish_load_balancer(kube, node.node_ip)
        entry = Entrypoint(address=node.node_ip)
        _wait(lambda: _deployment_available(kube), timeout, "the Traefik Deployment available", kube)
        _wait(
            lambda: _gateway_programmed(kube, node.node_ip),
            timeout,
            f"Gateway {NAMESPACE}/{GATEWAY_NAME} Programmed with address {node.node_ip}",
            kube,
        )
    finally:
        kube.close()
    say(
        f"Traefik {image.tag} routes Ingress (class {INGRESS_CLASS}) and Gateway API (Gateway "
        f"{NAMESPACE}/{GATEWAY_NAME}) at {entry.url} ({time.monotonic() - t0:.1f}s)"
    )
    return entry


def _publish_load_balancer(kube: SyncKube, address: str) -> None:
    """What a load-balancer controller does: give the Service its external address. kube-proxy
    then forwards that address's port to Traefik; `ipMode: VIP` because the address is the node's
    own, so the node must route it itself rather than expect a proxy in front."""
    kube.patch_status(
        KINDS[("v1", "Service")], NAMESPACE, NAME, {"loadBalancer": {"ingress": [{"ip": address, "ipMode": "VIP"}]}}
    )


def _deployment_available(kube: SyncKube) -> bool:
    d = kube.get(KINDS[("apps/v1", "Deployment")], NAMESPACE, NAME) or {}
    return int((d.get("status") or {}).get("availableReplicas") or 0) >= 1


def _gateway_programmed(kube: SyncKube, address: str) -> bool:
    status = (kube.get(GATEWAY, NAMESPACE, GATEWAY_NAME) or {}).get("status") or {}
    conds = {c["type"]: c["status"] for c in status.get("conditions") or ()}
    return conds.get("Programmed") == "True" and address in [a.get("value") for a in status.get("addresses") or ()]


def _problems(kube: SyncKube) -> str:
    lines = []
    for p in kube.list(POD, NAMESPACE):
        name = p["metadata"]["name"]
        status = p.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            w = (cs.get("state") or {}).get("waiting")
            lines.append(
                f"pod {name} {status.get('phase')} ready={cs.get('ready')} restarts={cs.get('restartCount')}"
                + (f" waiting {w.get('reason')}: {w.get('message')}" if w else "")
            )
        try:
            lines.append(kube.log(NAMESPACE, name, tail_lines=30))
        except Exception:  # noqa: BLE001 - no container yet
            pass
    for e in kube.list(KINDS[("v1", "Event")], NAMESPACE):
        if e.get("type") == "Warning":
            involved = e.get("involvedObject") or {}
            lines.append(f"event {involved.get('kind')}/{involved.get('name')} {e.get('reason')}: {e.get('message')}")
    return "\n".join(lines)


def _wait(ready: Callable[[], bool], timeout: float, what: str, kube: SyncKube) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not there yet (404) or the API blinked
            pass
        time.sleep(0.5)
    raise TraefikError(f"Traefik: no {what} within {timeout:.0f}s\n{_problems(kube)}")
