"""Livestream handlers: create/update/resume reconcile at once; a daemon per Livestream keeps it so.

Why a daemon and not only handlers: the status comes from the agents (polled), the lifecycle
changes with the clock (join-ahead), and children drift (deleted, hand-edited). The daemon is
the one loop that sleeps until the earliest of: the poll interval, ``next_change_at``, or a
wake-up (CallType change, child event, webhook delivery), then re-applies when something asks
for it and refreshes status. Handlers and daemon share one lock per Livestream, so there is never
more than one writer of a Livestream's children or status.

A change of the Livestream is reconciled once, by its handler: it renders and applies only when
the generation (or CallType) moved, so a label or annotation edit costs no apply, and it polls the
agents; the daemon then only re-arms its timer for the new lifecycle (``LivestreamState.rearm``)
instead of polling them a second time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

import kopf

from onair.api.meta import GROUP, VERSION

from . import members, metrics, reconcile, recordings, rollout
from .calltype import request_status_sync
from onair.kube import KubeError, request_order
from .runtime import LivestreamState, Runtime

log = logging.getLogger("onair.controller")
RESOURCE = (GROUP, VERSION, "livestreams")
# Transient API failures: retry quickly at first, then settle.
RETRY_DELAYS = (1, 2, 5, 10, 30)


async def reconcile_now(rt: Runtime, state: LivestreamState, body: Any, *, poll_agents: bool = True) -> None:
    """Apply if needed and refresh status, under the Livestream's lock."""
    async with state.lock:
        # The Kubernetes client serves the oldest reconcile first (onair.kube.OldestFirstGate).
        order = request_order.set(next(rt.reconcile_order))
        started = time.monotonic()
        outcome: Optional[str] = None  # stays None when cancelled (shutdown): not a reconcile outcome
        reason: Optional[str] = None
        try:
            ls = reconcile.plain(body)
            if reconcile.needs_apply(rt, state, ls) or await rollout.release_due(rt, state):
                await reconcile.sync_children(rt, state, ls, body)
            await reconcile.sync_status(rt, state, ls, body, poll_agents=poll_agents)
            state.transient_failures = 0
            if state.problem is not None:
                outcome, reason = metrics.STALLED, state.problem.reason
            else:
                outcome = metrics.OK
        except KubeError:
            outcome, reason = metrics.RETRYING, metrics.KUBE_API_UNAVAILABLE
            raise
        except Exception as exc:
            outcome, reason = metrics.FAILED, type(exc).__name__
            raise
        finally:
            state.confirm_child_events()
            request_order.reset(order)
            if outcome is not None:
                rt.metrics.reconciled(outcome, time.monotonic() - started, reason)


def _wait_seconds(rt: Runtime, state: LivestreamState) -> float:
    wait = rt.poll_interval
    if state.transient_failures:
        wait = min(wait, RETRY_DELAYS[min(state.transient_failures, len(RETRY_DELAYS)) - 1])
    if state.converging_until is not None and rt.clock() < state.converging_until:
        wait = min(wait, reconcile.CONVERGE_POLL_SECONDS)
    changes = (
        state.lifecycle.next_change_at if state.lifecycle else None,
        members.tokens_refresh_at(state),
        state.ingest_rollout.recheck_at,
    )
    nxt = min((t for t in changes if t is not None), default=None)
    if nxt is not None:
        # +50 ms: wake just after the instant, so the lifecycle computed then has flipped.
        wait = min(wait, max(0.0, (nxt - rt.clock()).total_seconds() + 0.05))
    return max(wait, 0.0)


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:

    @kopf.index(*RESOURCE, id="livestreams_by_calltype", registry=registry)
    async def livestreams_by_calltype(*, namespace: Optional[str], name: str, spec: kopf.Spec, **_: Any) -> dict:
        return {spec.get("callType", ""): (namespace, name)}

    async def on_change(body: kopf.Body, **_: Any) -> None:
        state = rt.state_for(body)
        try:
            await reconcile_now(rt, state, body)
        except KubeError as exc:
            # Only transient failures get here (user errors become conditions).
            raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=5) from None
        finally:
            state.rearm.set()  # the daemon re-arms its timer for the new lifecycle
        request_status_sync(rt, body.get("spec", {}).get("callType", ""))

    kopf.on.create(*RESOURCE, id="reconcile", registry=registry)(on_change)
    kopf.on.update(*RESOURCE, id="reconcile", registry=registry)(on_change)
    kopf.on.resume(*RESOURCE, id="reconcile", registry=registry)(on_change)

    @kopf.on.event(*RESOURCE, id="calltype-count", registry=registry)
    async def count_users(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        # Create/delete changes the CallType's status.livestreams; every other event is a no-op
        # against the cache.
        if event.get("type") in ("ADDED", "DELETED", None):
            request_status_sync(rt, body.get("spec", {}).get("callType", ""))
        if event.get("type") == "DELETED":
            meta = body.get("metadata", {})
            rt.forget(meta.get("namespace"), meta.get("name"), meta.get("uid"))
            # Its origin served its recordings on the volume: their URLs end with it.
            await recordings.livestream_gone(rt, meta.get("namespace"), meta.get("name"))

    @kopf.daemon(*RESOURCE, id="status", cancellation_timeout=5.0, registry=registry)
    async def status_daemon(stopped: kopf.DaemonStopped, body: kopf.Body, **_: Any) -> None:
        state = rt.state_for(body)
        stop_task = asyncio.ensure_future(stopped.wait())
        try:
            while not stopped:
                wake_task = asyncio.ensure_future(state.wake.wait())
                rearm_task = asyncio.ensure_future(state.rearm.wait())
                await asyncio.wait(
                    {stop_task, wake_task, rearm_task},
                    timeout=_wait_seconds(rt, state),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                wake_task.cancel()
                rearm_task.cancel()
                if stopped:
                    break
                rearmed = state.rearm.is_set()
                state.rearm.clear()
                if rearmed and not state.wake.is_set():
                    continue  # a handler has just reconciled: only the timer changes
                state.wake.clear()
                try:
                    await reconcile_now(rt, state, body)
                except KubeError as exc:
                    state.transient_failures += 1
                    log.warning("%s/%s: Kubernetes API unavailable (%s); retrying", state.namespace, state.name, exc)
                except Exception:  # noqa: BLE001 - the loop must survive anything; the next poll retries
                    state.transient_failures += 1
                    log.exception("%s/%s: reconcile failed", state.namespace, state.name)
        finally:
            stop_task.cancel()
