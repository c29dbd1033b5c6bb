"""What the runner reads from and writes to the API server, the kubelet's side of it: the
operator's Deployments, Services and bare pods, the ConfigMaps, Secrets and claims their volumes
name, and the status of a one-shot pod. Objects come back as plain dicts, as in a manifest."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterable, Optional

from onair.api.meta import MANAGER
from onair.kube import KINDS, POD, Kind, Kube, KubeError, SyncKube, load_config

from .pods import Pending

SELECTOR = {"app.kubernetes.io/managed-by": MANAGER}
REQUEST_TIMEOUT = 10
DEPLOYMENT, SERVICE = KINDS[("apps/v1", "Deployment")], KINDS[("v1", "Service")]
STATEFULSET = KINDS[("apps/v1", "StatefulSet")]


def client(kubeconfig: str) -> SyncKube:
    return SyncKube(load_config(kubeconfig), request_timeout=REQUEST_TIMEOUT)


def _scopes(namespaces: Optional[Iterable[str]]) -> list[Optional[str]]:
    """The namespaces to list, or [None]: all of them."""
    return list(namespaces) if namespaces else [None]


def list_managed(
    kube: SyncKube, namespaces: Optional[Iterable[str]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The operator's workloads (Deployments, and the origin's StatefulSet with replicas) and Services."""
    deployments: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    for ns in _scopes(namespaces):
        deployments += [{**d, "kind": "Deployment"} for d in kube.list(DEPLOYMENT, ns, SELECTOR)]
        deployments += [{**d, "kind": "StatefulSet"} for d in kube.list(STATEFULSET, ns, SELECTOR)]
        services += kube.list(SERVICE, ns, SELECTOR)
    return deployments, services


def list_pods(kube: SyncKube, namespaces: Optional[Iterable[str]]) -> list[dict[str, Any]]:
    """The operator's pods (those of its Deployments and its bare ones)."""
    out: list[dict[str, Any]] = []
    for ns in _scopes(namespaces):
        out += kube.list(POD, ns, SELECTOR)
    return out


def read(kube: SyncKube, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """A ConfigMap, Secret or PersistentVolumeClaim; ``Pending`` while it is absent or being deleted."""
    obj = kube.get(KINDS[("v1", kind)], namespace, name)
    if obj is None:
        raise Pending(f"waiting for {kind} {name}")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        raise Pending(f"{kind} {name} is being deleted")
    return obj


def patch_pod_status(kube: SyncKube, namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Write a pod's status as the kubelet would; False if the pod is gone."""
    try:
        kube.patch_status(POD, namespace, name, status)
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def watch_deployments(
    kubeconfig: str, namespaces: Optional[Iterable[str]], stop: threading.Event, wake: threading.Event
) -> None:
    """Set ``wake`` on every Deployment event until ``stop``; a resync covers anything missed."""
    asyncio.run(_watch_deployments(kubeconfig, namespaces, stop, wake))


async def _watch_deployments(
    kubeconfig: str, namespaces: Optional[Iterable[str]], stop: threading.Event, wake: threading.Event
) -> None:
    # Async, so that ``stop`` ends a watch that is waiting for its next event (a blocking watch
    # could only notice it after an event).
    kube = Kube(load_config(kubeconfig), request_timeout=REQUEST_TIMEOUT)

    async def watch(kind: Kind, ns: Optional[str]) -> None:
        while True:
            try:
                async for _ in kube.watch(kind, ns, SELECTOR):
                    wake.set()
            except KubeError:  # 410 Gone, API restarts: start over, the resync covers the gap
                await asyncio.sleep(1.0)

    watches = [asyncio.create_task(watch(kind, ns)) for kind in (DEPLOYMENT, STATEFULSET) for ns in _scopes(namespaces)]
    try:
        await asyncio.to_thread(stop.wait)
    finally:
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        await kube.close()
