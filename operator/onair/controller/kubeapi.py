"""The operator's own Kubernetes calls: raw REST through the official client, off the event loop.

kopf owns watching; everything the operator *writes* (server-side apply of children, pruning,
status patches) goes through this small wrapper so that

* every blocking call runs in a dedicated thread pool and the kopf loop never stalls;
* errors come back as one exception type carrying the API server's own message, which is what
  ends up in conditions and Events (users read it, so it must not be a traceback);
* arbitrary kinds need no generated API class: a path table is enough for the handful we own.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import time
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote, urlencode

from kubernetes import client as k8s
from kubernetes import config as k8s_config

import kopf

from onair.api.meta import MANAGER

from .metrics import APPLY, STATUS_PATCH, OperatorMetrics
from .workpool import OldestFirstExecutor

FIELD_MANAGER = MANAGER


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def prefix(self) -> str:
        return f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"

    def path(self, namespace: Optional[str], name: Optional[str] = None, subresource: Optional[str] = None) -> str:
        parts = [self.prefix]
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: a namespace is required")
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name:
            parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


KINDS: dict[tuple[str, str], Kind] = {(k.api_version, k.kind): k for k in (
    Kind("v1", "Secret", "secrets"),
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("v1", "Service", "services"),
    Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Kind("v1", "ServiceAccount", "serviceaccounts"),
    Kind("v1", "Event", "events"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("networking.k8s.io/v1", "Ingress", "ingresses"),
    Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
    Kind("onair.dev/v1alpha1", "Livestream", "livestreams"),
    Kind("onair.dev/v1alpha1", "CallType", "calltypes", namespaced=False),
)}
LIVESTREAM = KINDS[("onair.dev/v1alpha1", "Livestream")]
CALLTYPE = KINDS[("onair.dev/v1alpha1", "CallType")]
# Read only (why an agent does not answer); pods are the Deployments' business, never applied.
POD = Kind("v1", "Pod", "pods")


def kind_of(obj: dict) -> Kind:
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    try:
        return KINDS[key]
    except KeyError:
        raise ValueError(f"the operator has no REST mapping for {key[1]} {key[0]}") from None


class KubeError(Exception):
    """An API call failed. ``status`` 0 means no HTTP answer at all (network, timeout)."""

    def __init__(self, status: int, reason: str, message: str, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path

    @property
    def transient(self) -> bool:
        # 4xx other than conflicts/throttling is the request's fault and retrying changes nothing.
        return self.status == 0 or self.status >= 500 or self.status in (409, 429)

    def __str__(self) -> str:
        return self.message


def api_client(kubeconfig: Optional[str] = None, context: Optional[str] = None) -> k8s.ApiClient:
    """An ApiClient for ``kubeconfig``, else in-cluster, else the default kubeconfig.

    A private Configuration (never the library's global default) so several operators in one
    process (tests) can talk to different clusters.
    """
    cfg = k8s.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(context=context, client_configuration=cfg)
    # Bursts of applies from several Livestreams share one pool; the default (cpus*5) is small.
    cfg.connection_pool_maxsize = 32
    return k8s.ApiClient(cfg)


def connection_info(api: k8s.ApiClient) -> kopf.ConnectionInfo:
    """What kopf needs to watch the same cluster the ApiClient talks to."""
    cfg = api.configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def _decode_error(exc: Exception, method: str, path: str) -> KubeError:
    if isinstance(exc, k8s.ApiException):
        status, reason, message = exc.status or 0, exc.reason or "", ""
        try:
            payload = json.loads(exc.body or "")
            message = payload.get("message", "")
            reason = payload.get("reason", reason)
        except (ValueError, TypeError, AttributeError):
            message = (exc.body or "")[:500] if isinstance(exc.body, str) else ""
        return KubeError(status, reason, message or f"{method} {path}: HTTP {status} {reason}", method, path)
    return KubeError(0, type(exc).__name__, f"{method} {path}: {exc}", method, path)


class Kube:
    """Async facade over one ApiClient; every call runs in ``executor``."""

    def __init__(self, api: k8s.ApiClient, executor: Optional[concurrent.futures.Executor] = None,
                 request_timeout: float = 30.0, metrics: Optional[OperatorMetrics] = None) -> None:
        self.api = api
        self.metrics = metrics
        self._own_executor = executor is None
        self.executor = executor or OldestFirstExecutor(max_workers=8, thread_name_prefix="onair-kube")
        self.request_timeout = request_timeout

    def close(self) -> None:
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    # ------------------------------------------------------------------ raw
    def _request_sync(self, method: str, path: str, body: Any = None, query: Optional[dict] = None,
                      content_type: Optional[str] = None) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        if query:
            path = f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}"
        try:
            _, url, headers, body, _ = self.api.param_serialize(
                method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
            resp = self.api.call_api(method, url, header_params=headers, body=body,
                                     _request_timeout=self.request_timeout)
            data = resp.read()
            if not 200 <= resp.status < 300:
                raise k8s.ApiException(http_resp=resp)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a KubeError with a readable message
            raise _decode_error(exc, method, path) from exc
        return json.loads(data) if data else None

    async def request(self, method: str, path: str, body: Any = None, query: Optional[dict] = None,
                      content_type: Optional[str] = None) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._request_sync, method, path, body, query, content_type)
        return await loop.run_in_executor(self.executor, call)

    # ------------------------------------------------------------------ verbs
    async def get(self, kind: Kind, namespace: Optional[str], name: str) -> Optional[dict]:
        try:
            return await self.request("GET", kind.path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: Kind, namespace: Optional[str], label_selector: Optional[str] = None) -> list[dict]:
        result = await self.request("GET", kind.path(namespace), query={"labelSelector": label_selector})
        return list(result.get("items") or [])

    async def apply(self, obj: dict, field_manager: str = FIELD_MANAGER) -> dict:
        """Server-side apply with force: the operator owns exactly the fields it renders."""
        kind = kind_of(obj)
        meta = obj["metadata"]
        return await self._timed(APPLY, self.request(
            "PATCH", kind.path(meta.get("namespace"), meta["name"]), body=obj,
            query={"fieldManager": field_manager, "force": "true"}, content_type="application/apply-patch+yaml"))

    async def create_if_absent(self, obj: dict, field_manager: str = FIELD_MANAGER,
                               check_first: bool = True) -> Optional[dict]:
        """Create ``obj`` unless an object of that name exists; never touch an existing one.

        ``check_first``: GET before POST. Without it an existing object costs a refused POST
        instead of a GET (cheaper when the caller expects it to be absent). Admission (e.g. a
        full ResourceQuota) judges a POST before the name clash, hence GET first by default."""
        kind = kind_of(obj)
        meta = obj["metadata"]
        if check_first and await self.get(kind, meta.get("namespace"), meta["name"]) is not None:
            return None
        try:
            return await self.request("POST", kind.path(meta.get("namespace")), body=obj,
                                      query={"fieldManager": field_manager})
        except KubeError as exc:
            if exc.status == 409:
                return None
            raise

    async def delete(self, kind: Kind, namespace: Optional[str], name: str, uid: Optional[str] = None) -> bool:
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            # Never delete a same-named object that replaced the one we decided to prune.
            body["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", kind.path(namespace, name), body=body)
        except KubeError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def merge_patch(self, kind: Kind, namespace: Optional[str], name: str, patch: dict) -> dict:
        """JSON merge patch of the object (never creates it: a missing object is a 404)."""
        return await self.request("PATCH", kind.path(namespace, name), body=patch,
                                  query={"fieldManager": FIELD_MANAGER}, content_type="application/merge-patch+json")

    async def patch_status(self, kind: Kind, namespace: Optional[str], name: str, status: dict) -> dict:
        """JSON merge patch of the status subresource (None values delete keys)."""
        return await self._timed(STATUS_PATCH, self.request(
            "PATCH", kind.path(namespace, name, "status"), body={"status": status},
            query={"fieldManager": FIELD_MANAGER}, content_type="application/merge-patch+json"))

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.monotonic()
        try:
            return await call
        finally:
            if self.metrics is not None:
                self.metrics.kube_request(operation, time.monotonic() - started)


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def owned_by(obj: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj.get("metadata", {}).get("ownerReferences") or [])
