"""The ingest slots' staggered rollout in the reconcile loop (the decision: ``onair.render.rollout``).

* ``plan``: before an apply, read both ingest Deployments (from the API server, not the watch
  cache: the decision must see the operator's own last write) and decide which slot, if any, gets
  its new template paused;
* ``staggered``: the render with that decision in the held slot's Deployment;
* ``applied``: once the apply went through, post the decision's Event and remember it;
* ``release_due``: on every status poll while a slot is held, re-decide from the Deployments and
  the agents' last reports (two GETs, nothing applied); True when the held slot may roll now,
  which makes that reconcile re-apply. A held slot is never waited on inside a handler.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, Mapping, Optional

from onair.api.agent import IngestStatus, TranscoderStatus
from onair.render import rollout as rr
from onair.render.child_names import child_name
from onair.render.children import RenderedChildren

from . import events
from onair.kube import KINDS
from .runtime import LivestreamState, Runtime

log = logging.getLogger("onair.controller")
DEPLOYMENT = KINDS[("apps/v1", "Deployment")]
SLOTS = (rr.MAIN, rr.BACKUP)


def _templates(rendered: RenderedChildren) -> dict[str, str]:
    """Ingest key -> hash of the pod template the render applies."""
    out = {}
    for obj in rendered.objects:
        key = (obj.get("metadata") or {}).get("labels", {}).get("app.kubernetes.io/component")
        if obj.get("kind") == "Deployment" and key in SLOTS:
            out[key] = obj["metadata"]["annotations"][rr.TEMPLATE_HASH_ANNOTATION]
    return out


def receiving(rt: Runtime, state: LivestreamState) -> dict[str, Optional[bool]]:
    """Per ingest slot, whether its encoder pushes to it, as the last poll of the pod the operator
    reads now found it; None when unknown. A report of another pod does not count: right after a
    slot's new pod took over, the last report is still the old pod's, whose publisher is not back."""
    out: dict[str, Optional[bool]] = {}
    for key in SLOTS:
        report = state.agents.get(key)
        status = (
            report.status
            if report is not None
            and report.reachable
            and report.url == rt.agent_client.url(state.namespace, state.name, key)
            else None
        )
        out[key] = status.receiving if isinstance(status, IngestStatus) else None
    return out


def _active_source(state: LivestreamState, stored: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The transcoder's source at the last poll, else as the stored status has it (right after an
    operator restart, e.g. the one of `helm upgrade`, nothing has been polled yet)."""
    report = state.agents.get("transcoder")
    status = report.status if report is not None and report.reachable else None
    if isinstance(status, TranscoderStatus) and status.active_source:
        return status.active_source
    stored = state.status if state.status is not None else (stored or {})
    return stored.get("activeSource") or stored.get("lastActiveSource")


async def _decide(
    rt: Runtime, state: LivestreamState, templates: Mapping[str, str], stored: Optional[Mapping[str, Any]] = None
) -> rr.IngestRollout:
    if not rt.stagger_ingest_rollouts or set(templates) != set(SLOTS):
        return rr.NO_HOLD
    found = await asyncio.gather(
        *(rt.kube.get(DEPLOYMENT, state.namespace, child_name(state.name, key)) for key in SLOTS)
    )
    observed = {key: rr.observe_deployment(d) if d is not None else None for key, d in zip(SLOTS, found)}
    return rr.plan_ingest_rollout(templates, observed, receiving(rt, state), _active_source(state, stored), rt.clock())


async def plan(
    rt: Runtime, state: LivestreamState, rendered: RenderedChildren, stored: Optional[Mapping[str, Any]]
) -> rr.IngestRollout:
    """``stored``: the Livestream's status as read with it. Raises KubeError like any read of the
    reconcile."""
    return await _decide(rt, state, _templates(rendered), stored)


def staggered(rendered: RenderedChildren, decision: rr.IngestRollout) -> RenderedChildren:
    if decision.held is None:
        return rendered
    objects = []
    for obj in rendered.objects:
        key = (obj.get("metadata") or {}).get("labels", {}).get("app.kubernetes.io/component")
        objects.append(rr.apply_ingest_rollout(obj, key, decision) if obj.get("kind") == "Deployment" else obj)
    return replace(rendered, objects=objects)


def applied(
    state: LivestreamState, body: Mapping[str, Any], rendered: RenderedChildren, decision: rr.IngestRollout
) -> None:
    state.ingest_rollout = decision
    state.ingest_templates = _templates(rendered)
    if decision.event is not None:
        log.info("%s/%s: %s: %s", state.namespace, state.name, decision.event.reason, decision.event.message)
        events.post(body, [events.Event(decision.event.type, decision.event.reason, decision.event.message)])


async def release_due(rt: Runtime, state: LivestreamState) -> bool:
    """While a slot is held: whether it may roll now (the caller then re-applies). Raises KubeError."""
    held = state.ingest_rollout.held
    if held is None:
        return False
    decision = await _decide(rt, state, state.ingest_templates)
    if decision.held == held:
        return False
    state.dirty.add(f"ingest rollout: {held} may roll now")
    return True
