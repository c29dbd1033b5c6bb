"""CallType handlers: keep the CallType index for rendering, fan changes out to the Livestreams
that use it, and keep ``status.livestreams`` (how many use it) current.

No finalizer on CallTypes (no delete handler, no daemon): deleting a CallType in use is allowed,
and its Livestreams report ``CallTypeNotFound`` but keep running on what was last applied.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from onair.api.meta import GROUP, VERSION

from onair.kube import CALLTYPE
from .runtime import Runtime

log = logging.getLogger("onair.controller")
RESOURCE = (GROUP, VERSION, "calltypes")


def request_status_sync(rt: Runtime, name: str) -> None:
    """Recount CallType ``name``'s users soon: bursts of creates/deletes share one status patch.

    Every path that can change ``status.livestreams``/``observedGeneration`` goes through the
    runtime's coalescer, so one CallType never has two status patches in flight."""
    if name:
        rt.calltype_status.request(name)


async def sync_calltype_status(rt: Runtime, name: str) -> None:
    """Patch ``status.livestreams``/``observedGeneration`` of CallType ``name`` when they differ."""
    body = rt.calltype_body(name)
    if body is None:
        return
    meta = body.get("metadata") or {}
    wanted = {"livestreams": len(rt.calltype_users(name)), "observedGeneration": meta.get("generation")}
    cached = rt.calltype_status_cache.get(name)
    current = (
        cached
        if cached is not None and cached.get("uid") == meta.get("uid")
        else {"uid": meta.get("uid"), **{k: (body.get("status") or {}).get(k) for k in wanted}}
    )
    if all(current.get(k) == v for k, v in wanted.items()):
        rt.calltype_status_cache[name] = current
        return
    await rt.kube.patch_status(CALLTYPE, None, name, wanted)
    rt.calltype_status_cache[name] = {"uid": meta.get("uid"), **wanted}


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    rt.calltype_status_sync = lambda name: sync_calltype_status(rt, name)

    @kopf.index(*RESOURCE, id="calltypes_by_name", registry=registry)
    async def calltypes_by_name(name: str, body: kopf.Body, **_: Any) -> dict:
        # A detached copy: the index outlives this event's body.
        return {
            name: {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "metadata": dict(body.get("metadata") or {}),
                "spec": _plain(body.get("spec") or {}),
                "status": _plain(body.get("status") or {}),
            }
        }

    @kopf.on.event(*RESOURCE, id="fan-out", registry=registry)
    async def fan_out(event: kopf.RawEvent, name: str, body: kopf.Body, **_: Any) -> None:
        kind = event.get("type")
        if kind is None:
            # Initial listing: every Livestream is reconciled by its resume handler anyway.
            rt.calltype_versions[name] = calltype_version(body)
            request_status_sync(rt, name)
            return
        users = rt.calltype_users(name)
        if kind == "DELETED":
            rt.calltype_status_cache.pop(name, None)
            rt.calltype_versions.pop(name, None)
            rt.parsed_calltypes.pop(name, None)
        elif _status_only(rt, name, body):
            return
        else:
            request_status_sync(rt, name)
        for namespace, ls in users:
            rt.wake(namespace, ls, f"CallType {name} {kind.lower()}")
        if users:
            log.info("CallType %s %s: reconciling %d livestream(s)", name, kind.lower(), len(users))


def calltype_version(body: Any) -> str:
    """uid + generation: changes with the spec (and on re-creation), not with our status patches."""
    meta = (body or {}).get("metadata") or {}
    return f"{meta.get('uid')}/{meta.get('generation')}"


def _status_only(rt: Runtime, name: str, body: kopf.Body) -> bool:
    """True when only the status changed (our own count patch): nothing to re-render."""
    seen = rt.calltype_versions.get(name)
    rt.calltype_versions[name] = calltype_version(body)
    return seen == rt.calltype_versions[name]


def _plain(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
