"""What the runner reads from and writes to the API server, the kubelet's side of it: the
operator's Deployments, Services and bare pods, the ConfigMaps, Secrets and claims their volumes
name, and the status of a one-shot pod. Objects come back as plain dicts, as in a manifest."""
from __future__ import annotations

import threading
from typing import Any, Iterable, Optional

from .pods import Pending

SELECTOR = "app.kubernetes.io/managed-by=onair-operator"
REQUEST_TIMEOUT = 10


def _scopes(namespaces: Optional[Iterable[str]]) -> list[Optional[str]]:
    """The namespaces to list, or [None]: all of them."""
    return list(namespaces) if namespaces else [None]


def list_managed(api: Any, namespaces: Optional[Iterable[str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The operator's Deployments and Services."""
    from kubernetes import client

    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    deployments: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    for ns in _scopes(namespaces):
        if ns:
            deps = apps.list_namespaced_deployment(ns, label_selector=SELECTOR, _request_timeout=REQUEST_TIMEOUT).items
            svcs = core.list_namespaced_service(ns, label_selector=SELECTOR, _request_timeout=REQUEST_TIMEOUT).items
        else:
            deps = apps.list_deployment_for_all_namespaces(label_selector=SELECTOR,
                                                           _request_timeout=REQUEST_TIMEOUT).items
            svcs = core.list_service_for_all_namespaces(label_selector=SELECTOR,
                                                        _request_timeout=REQUEST_TIMEOUT).items
        deployments += [api.sanitize_for_serialization(d) for d in deps]
        services += [api.sanitize_for_serialization(s) for s in svcs]
    return deployments, services


def list_pods(api: Any, namespaces: Optional[Iterable[str]]) -> list[dict[str, Any]]:
    """The operator's pods (those of its Deployments and its bare ones)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    out: list[dict[str, Any]] = []
    for ns in _scopes(namespaces):
        items = (core.list_namespaced_pod(ns, label_selector=SELECTOR, _request_timeout=REQUEST_TIMEOUT).items
                 if ns else
                 core.list_pod_for_all_namespaces(label_selector=SELECTOR, _request_timeout=REQUEST_TIMEOUT).items)
        out += [api.sanitize_for_serialization(item) for item in items]
    return out


def read(api: Any, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """A ConfigMap, Secret or PersistentVolumeClaim; ``Pending`` while it is absent or being deleted."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    fn = {"ConfigMap": core.read_namespaced_config_map, "Secret": core.read_namespaced_secret,
          "PersistentVolumeClaim": core.read_namespaced_persistent_volume_claim}[kind]
    try:
        obj: dict[str, Any] = api.sanitize_for_serialization(fn(name, namespace, _request_timeout=REQUEST_TIMEOUT))
    except ApiException as exc:
        if exc.status == 404:
            raise Pending(f"waiting for {kind} {name}") from None
        raise
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        raise Pending(f"{kind} {name} is being deleted")
    return obj


def patch_pod_status(api: Any, namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Write a pod's status as the kubelet would; False if the pod is gone."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api).patch_namespaced_pod_status(name, namespace, {"status": status},
                                                          _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def watch_deployments(kubeconfig: str, namespaces: Optional[Iterable[str]], stop: threading.Event,
                      wake: threading.Event) -> None:
    """Set ``wake`` on every Deployment event until ``stop``; a resync covers anything missed."""
    from kubernetes import client, watch

    from ..apply import api_client

    api = api_client(kubeconfig)
    apps = client.AppsV1Api(api)
    scopes = _scopes(namespaces)
    rv: dict[Optional[str], Optional[str]] = {}
    try:
        while not stop.is_set():
            for ns in scopes:
                if stop.is_set():
                    break
                w = watch.Watch()
                kwargs: dict[str, Any] = {"label_selector": SELECTOR, "timeout_seconds": 2,
                                          "_request_timeout": REQUEST_TIMEOUT}
                if rv.get(ns):
                    kwargs["resource_version"] = rv[ns]
                fn = apps.list_namespaced_deployment if ns else apps.list_deployment_for_all_namespaces
                args = (ns,) if ns else ()
                try:
                    for event in w.stream(fn, *args, **kwargs):
                        obj = event.get("object")
                        version = getattr(getattr(obj, "metadata", None), "resource_version", None)
                        if version:
                            rv[ns] = version
                        wake.set()
                        if stop.is_set():
                            w.stop()
                            break
                except Exception:  # noqa: BLE001 - 410 Gone, API restarts: start over, the resync covers
                    rv[ns] = None
                    stop.wait(1.0)
    finally:
        api.close()
