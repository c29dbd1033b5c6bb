"""The one Kubernetes client of onair, on lightkube: the operator, the local cluster and the CLIs.

Why lightkube (over kubernetes_asyncio, and over the official client in a thread pool):

* one API, async (``AsyncClient``) and blocking (``Client``), so the operator and the tools write
  the same calls;
* server-side apply (field manager + force) and the status subresource are first-class
  (``patch(..., patch_type=APPLY, force=True)``, ``Res.Status``), not hand-built REST;
* generic resources are plain dicts, so the operator's rendered manifests go out and come back
  as dicts with no model round trip, for built-in kinds and our CRDs alike;
* kubeconfig and in-cluster loading in one call (``KubeConfig.from_env``).

Every failure comes back as one exception, :class:`KubeError`, carrying the API server's own
message: that is what ends up in conditions and Events, which users read.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Optional

import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient, Client, ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import User
from lightkube.core import resource as lk_resource
from lightkube.core.exceptions import LoadResourceError
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import (
    GenericGlobalResource,
    GenericGlobalStatus,
    GenericNamespacedResource,
    GenericNamespacedStatus,
    create_api_info,
)
from lightkube.types import PatchType

from onair.api.meta import API_VERSION, MANAGER

FIELD_MANAGER = MANAGER
# The operation names timed through ``on_request`` (the operator's request-duration metric).
APPLY, STATUS_PATCH = "apply", "status_patch"

__all__ = [
    "ConfigError",
    "FIELD_MANAGER",
    "Kind",
    "Kube",
    "KubeError",
    "SingleConfig",
    "SyncKube",
    "User",
    "load_config",
]


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def resource(self) -> Any:
        """The lightkube resource class: dicts in, dicts out."""
        return _resource_class(self)


@functools.cache
def _resource_class(kind: Kind) -> Any:
    # Built here rather than with lightkube.generic_resource.create_*_resource: those register the
    # class in lightkube's process-wide registry, where a typed model of the same kind (imported by
    # anyone) would clash with it. Ours stay private and always decode to plain dicts.
    group, _, version = kind.api_version.rpartition("/")
    info = create_api_info(group, version, kind.kind, kind.plural)
    status_info = lk_resource.ApiInfo(
        resource=info.resource, parent=info.resource, plural=kind.plural, verbs=["get", "patch", "put"], action="status"
    )
    base, status_base = (
        (GenericNamespacedResource, GenericNamespacedStatus)
        if kind.namespaced
        else (GenericGlobalResource, GenericGlobalStatus)
    )
    status = type(f"{kind.kind}Status", (status_base,), {"_api_info": status_info})
    return type(kind.kind, (base,), {"_api_info": info, "Status": status})


KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        Kind("v1", "Secret", "secrets"),
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "Service", "services"),
        Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        Kind("v1", "ServiceAccount", "serviceaccounts"),
        Kind("v1", "Event", "events"),
        # Read to say why an agent does not answer; created only to delete a Recording's files.
        Kind("v1", "Pod", "pods"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("apps/v1", "StatefulSet", "statefulsets"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        Kind("networking.k8s.io/v1", "Ingress", "ingresses"),
        Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
        Kind(API_VERSION, "Livestream", "livestreams"),
        Kind(API_VERSION, "Recording", "recordings"),
        Kind(API_VERSION, "CallType", "calltypes", namespaced=False),
    )
}
LIVESTREAM = KINDS[(API_VERSION, "Livestream")]
RECORDING = KINDS[(API_VERSION, "Recording")]
CALLTYPE = KINDS[(API_VERSION, "CallType")]
POD = KINDS[("v1", "Pod")]


CRD = Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False)


def kinds_of_crd(crd: Mapping) -> list[Kind]:
    """The kinds a CustomResourceDefinition serves, one per version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    return [
        Kind(f"{spec['group']}/{v['name']}", names["kind"], names["plural"], spec.get("scope") == "Namespaced")
        for v in spec.get("versions") or []
        if v.get("served", True)
    ]


def builtin_kind(api_version: str, kind: str) -> Optional[Kind]:
    """Any kind Kubernetes itself serves (lightkube's models know their REST names)."""
    try:
        model = resource_registry.load(api_version, kind)
    except LoadResourceError:
        return None
    info = model._api_info
    return Kind(api_version, kind, info.plural, issubclass(model, lk_resource.NamespacedResource))


def kind_of(obj: Mapping) -> Kind:
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    try:
        return KINDS[key]
    except KeyError:
        raise ValueError(f"onair has no REST mapping for {key[1]} {key[0]}") from None


class KubeError(Exception):
    """An API call failed. ``status`` 0 means no HTTP answer at all (network, timeout).
    ``what``: the call, in words ("apply Deployment show-origin in namespace media")."""

    def __init__(self, status: int, reason: str, message: str, what: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.what = what

    @property
    def transient(self) -> bool:
        # 4xx other than conflicts/throttling is the request's fault and retrying changes nothing.
        return self.status == 0 or self.status >= 500 or self.status in (409, 429)

    def __str__(self) -> str:
        return self.message


def _scope(kind: Kind, namespace: Optional[str]) -> Optional[str]:
    """What lightkube takes for "every namespace": ALL_NS for a namespaced kind, None otherwise."""
    return namespace or (ALL_NS if kind.namespaced else None)


def _what(verb: str, kind: Kind, namespace: Optional[str], name: Optional[str]) -> str:
    where = f" in namespace {namespace}" if namespace and namespace != ALL_NS else ""
    return f"{verb} {kind.kind}{' ' + name if name else ''}{where}"


def _decode_error(exc: Exception, verb: str, kind: Kind, namespace: Optional[str], name: Optional[str]) -> KubeError:
    what = _what(verb, kind, namespace, name)
    if isinstance(exc, ApiError):
        status = exc.status
        code = int(status.code or exc.response.status_code or 0)
        reason = status.reason or exc.response.reason_phrase or ""
        return KubeError(code, reason, status.message or f"{what}: HTTP {code} {reason}", what)
    if isinstance(exc, httpx2.HTTPStatusError):
        # No Status object in the answer (e.g. "404 page not found" for an API the cluster does
        # not serve): the HTTP status and the start of its text.
        code, reason = exc.response.status_code, exc.response.reason_phrase
        text = exc.response.text.strip()[:500]
        return KubeError(code, reason, f"{what}: HTTP {code} {reason}{': ' + text if text else ''}", what)
    return KubeError(0, type(exc).__name__, f"{what}: {exc or type(exc).__name__}", what)


def load_config(kubeconfig: Optional[str] = None, context: Optional[str] = None) -> SingleConfig:
    """``kubeconfig``, else in-cluster (a Pod's ServiceAccount), else $KUBECONFIG / ~/.kube/config.

    Raises :class:`ConfigError` when there is none. Never a process-wide default, so several
    operators in one process (tests) can talk to different clusters."""
    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    chosen = config.get(context_name=context)
    if chosen is None:
        raise ConfigError(f"{kubeconfig or 'the kubeconfig'} names no current context: pass one (--context)")
    return chosen


# ----------------------------------------------------------------------------- oldest first

# Set by whoever starts a unit of work (the operator's reconcile); read when a request waits.
request_order: contextvars.ContextVar[int] = contextvars.ContextVar("onair_request_order", default=0)


class OldestFirstGate:
    """At most ``limit`` requests in flight; a freed slot goes to the lowest ``request_order``.

    With plain FIFO a burst of N new Livestreams interleaves everyone's requests: stream 1's
    Deployments wait behind the Secrets and ConfigMaps of streams 2..N, so every stream finishes
    near the end of the burst. Lowest number first, streams finish one after another while the
    API server stays busy. Requests made outside a reconcile (order 0) go first."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._tiebreak = itertools.count()  # FIFO among requests of one order number

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (request_order.get(), next(self._tiebreak), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed the slot just as it was cancelled: pass it on
            raise

    async def __aexit__(self, *_: Any) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


# ----------------------------------------------------------------------------- the calls


@dataclass(frozen=True)
class _Request:
    """One API call, written once for both clients: ``AsyncClient`` and ``Client`` take the same
    method with the same arguments, so only the sending (await or not) differs between them.

    ``verb``/``kind``/``namespace``/``name`` name the call in a :class:`KubeError`; ``timed``: the
    operation name the async client reports to ``on_request``; ``none_if_missing``: a 404 is an
    answer (no such object), returned as None."""

    verb: str
    kind: Kind
    namespace: Optional[str]
    name: Optional[str]
    method: str = ""
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timed: Optional[str] = None
    none_if_missing: bool = False

    def send(self, client: Any) -> Any:
        return getattr(client, self.method)(*self.args, **self.kwargs)

    def failed(self, exc: Exception) -> None:
        """Raise ``exc`` as a :class:`KubeError` naming this call, unless it is an expected 404."""
        error = _decode_error(exc, self.verb, self.kind, self.namespace, self.name)
        if not (self.none_if_missing and error.status == 404):
            raise error from exc


def _get(kind: Kind, namespace: Optional[str], name: str) -> _Request:
    options = {"namespace": namespace}
    return _Request("get", kind, namespace, name, "get", (kind.resource, name), options, none_if_missing=True)


def _list(kind: Kind, namespace: Optional[str], labels: Optional[Mapping[str, Optional[str]]]) -> _Request:
    options = {"namespace": _scope(kind, namespace), "labels": dict(labels) if labels else None}
    return _Request("list", kind, namespace, None, "list", (kind.resource,), options)


def _apply(obj: dict, field_manager: str, kind: Optional[Kind] = None) -> _Request:
    kind, meta = kind or kind_of(obj), obj["metadata"]
    namespace, name = meta.get("namespace"), meta["name"]
    options = {"namespace": namespace, "patch_type": PatchType.APPLY, "field_manager": field_manager, "force": True}
    return _Request("apply", kind, namespace, name, "patch", (kind.resource, name, obj), options, timed=APPLY)


def _create(obj: dict, field_manager: str) -> _Request:
    kind, meta = kind_of(obj), obj["metadata"]
    options = {"field_manager": field_manager}
    return _Request("create", kind, meta.get("namespace"), meta["name"], "create", (kind.resource(obj),), options)


def _merge_patch(kind: Kind, namespace: Optional[str], name: str, patch: dict) -> _Request:
    options = {"namespace": namespace, "patch_type": PatchType.MERGE}
    return _Request("patch", kind, namespace, name, "patch", (kind.resource, name, patch), options)


def _patch_status(kind: Kind, namespace: Optional[str], name: str, status: dict) -> _Request:
    options = {"namespace": namespace, "patch_type": PatchType.MERGE}
    args = (kind.resource.Status, name, {"status": status})
    return _Request("patch status of", kind, namespace, name, "patch", args, options, timed=STATUS_PATCH)


# ----------------------------------------------------------------------------- async


class Kube:
    """The operator's client: dicts in, dicts out, :class:`KubeError` on any failure."""

    def __init__(
        self,
        config: SingleConfig,
        *,
        request_timeout: float = 30.0,
        max_in_flight: int = 8,
        on_request: Optional[Callable[[str, float], None]] = None,
    ) -> None:
        self.config = config
        self.client = AsyncClient(
            config, timeout=httpx2.Timeout(request_timeout, connect=10.0), field_manager=FIELD_MANAGER, trust_env=False
        )
        self.gate = OldestFirstGate(max_in_flight)
        self.on_request = on_request

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, request: _Request, call: Optional[Callable[[], Awaitable[Any]]] = None) -> Any:
        """Send ``request`` (or run ``call`` in its name) through the gate."""
        started = time.monotonic()
        try:
            async with self.gate:
                return await (call() if call is not None else request.send(self.client))
        except (ApiError, httpx2.HTTPError, OSError, asyncio.TimeoutError) as exc:
            return request.failed(exc)
        finally:
            if request.timed and self.on_request is not None:
                self.on_request(request.timed, time.monotonic() - started)

    async def get(self, kind: Kind, namespace: Optional[str], name: str) -> Optional[dict]:
        return await self._call(_get(kind, namespace, name))

    async def list(
        self, kind: Kind, namespace: Optional[str], labels: Optional[Mapping[str, Optional[str]]] = None
    ) -> list[dict]:
        """Every object of ``kind`` in ``namespace`` (None: all namespaces) with ``labels``
        (a None value: the label exists)."""
        request = _list(kind, namespace, labels)

        async def collect() -> list[dict]:
            return [item async for item in request.send(self.client)]

        return await self._call(request, collect)

    async def watch(
        self, kind: Kind, namespace: Optional[str], labels: Optional[Mapping[str, Optional[str]]] = None
    ) -> AsyncIterator[tuple[str, dict]]:
        """(event type, object) for every change, from now on, until cancelled; the watch is
        re-established after the server ends it. A failed (re)connection raises KubeError."""
        listing = _list(kind, namespace, labels)  # a watch takes the arguments of the listing it follows
        try:
            async for event, obj in self.client.watch(*listing.args, **listing.kwargs):
                yield event, obj
        except (ApiError, httpx2.HTTPError, OSError) as exc:
            raise _decode_error(exc, "watch", kind, namespace, None) from exc

    async def apply(self, obj: dict, field_manager: str = FIELD_MANAGER) -> dict:
        """Server-side apply with force: the operator owns exactly the fields it renders."""
        return await self._call(_apply(obj, field_manager))

    async def create(self, obj: dict, field_manager: str = FIELD_MANAGER) -> dict:
        """POST ``obj``; an existing object of that name is a 409 KubeError."""
        return await self._call(_create(obj, field_manager))

    async def create_if_absent(
        self, obj: dict, field_manager: str = FIELD_MANAGER, check_first: bool = True
    ) -> Optional[dict]:
        """Create ``obj`` unless an object of that name exists; never touch an existing one.

        ``check_first``: GET before POST. Without it an existing object costs a refused POST
        instead of a GET (cheaper when the caller expects it to be absent). Admission (e.g. a
        full ResourceQuota) judges a POST before the name clash, hence GET first by default."""
        meta = obj["metadata"]
        if check_first and await self.get(kind_of(obj), meta.get("namespace"), meta["name"]) is not None:
            return None
        try:
            return await self.create(obj, field_manager)
        except KubeError as exc:
            if exc.status == 409:
                return None
            raise

    async def delete(
        self,
        kind: Kind,
        namespace: Optional[str],
        name: str,
        uid: Optional[str] = None,
        resource_version: Optional[str] = None,
    ) -> bool:
        """Delete in the background; False when it is gone already or is not the one meant.

        ``uid`` / ``resource_version``: delete only that object (preconditions), never a
        same-named one that replaced it, nor one that changed since it was read."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            body["preconditions"] = preconditions

        async def send() -> None:
            # lightkube's delete() takes no DeleteOptions body, and preconditions exist only there.
            generic = self.client._client
            request = generic.prepare_request("delete", kind.resource, name=name, namespace=namespace)
            request.data = body
            generic.raise_for_status(await generic.send(generic.build_adapter_request(request)))

        try:
            await self._call(_Request("delete", kind, namespace, name), send)
        except KubeError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def merge_patch(self, kind: Kind, namespace: Optional[str], name: str, patch: dict) -> dict:
        """JSON merge patch of the object (never creates it: a missing object is a 404)."""
        return await self._call(_merge_patch(kind, namespace, name, patch))

    async def patch_status(self, kind: Kind, namespace: Optional[str], name: str, status: dict) -> dict:
        """JSON merge patch of the status subresource (None values delete keys)."""
        return await self._call(_patch_status(kind, namespace, name, status))


# ----------------------------------------------------------------------------- blocking


class SyncKube:
    """The same calls, blocking, for the tools that run in threads (local cluster, CLIs)."""

    def __init__(self, config: SingleConfig, *, request_timeout: float = 30.0) -> None:
        self.config = config
        self.client = Client(
            config, timeout=httpx2.Timeout(request_timeout, connect=10.0), field_manager=FIELD_MANAGER, trust_env=False
        )

    def close(self) -> None:
        self.client.close()

    def _call(self, request: _Request, then: Callable[[Any], Any] = lambda answer: answer) -> Any:
        """Send ``request``; ``then`` reads the answer (e.g. drains a listing) inside the error handling."""
        try:
            return then(request.send(self.client))
        except (ApiError, httpx2.HTTPError, OSError) as exc:
            return request.failed(exc)

    def get(self, kind: Kind, namespace: Optional[str], name: str) -> Optional[dict]:
        return self._call(_get(kind, namespace, name))

    def list(
        self, kind: Kind, namespace: Optional[str], labels: Optional[Mapping[str, Optional[str]]] = None
    ) -> list[dict]:
        return self._call(_list(kind, namespace, labels), list)

    def apply(self, obj: dict, field_manager: str = FIELD_MANAGER, kind: Optional[Kind] = None) -> dict:
        """``kind``: for a kind outside onair's own table (the local cluster's manifests)."""
        return self._call(_apply(obj, field_manager, kind))

    def create(self, obj: dict, field_manager: str = FIELD_MANAGER) -> dict:
        """POST ``obj``; an existing object of that name is a 409 KubeError."""
        return self._call(_create(obj, field_manager))

    def log(self, namespace: str, pod: str, tail_lines: Optional[int] = None) -> str:
        """The last lines a pod's (only) container wrote."""
        request = _Request(
            "read the log of", POD, namespace, pod, "log", (pod,), {"namespace": namespace, "tail_lines": tail_lines}
        )
        return self._call(request, "".join)

    def merge_patch(self, kind: Kind, namespace: Optional[str], name: str, patch: dict) -> dict:
        return self._call(_merge_patch(kind, namespace, name, patch))

    def patch_status(self, kind: Kind, namespace: Optional[str], name: str, status: dict) -> dict:
        return self._call(_patch_status(kind, namespace, name, status))
