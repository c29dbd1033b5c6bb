"""One reconcile of one Livestream: resolve -> render -> apply -> poll the agents -> status (+ Events).

Split in two halves so the status daemon can refresh status every poll without re-applying:

* ``sync_children``: render every child and apply it (only when something asks for it: a new
  generation, a changed CallType, a drifted child, a periodic resync);
* ``sync_status``: PUT the desired lifecycle to every agent, read their status, clear the DVR
  once per new ``spec.dvrClearedAt``, and patch ``status`` if and only if it changed.

Callers hold ``state.lock``. Problems a user can fix become ``Stalled`` conditions and Warning
Events (never exceptions); only transient API failures raise ``KubeError`` for a retry.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional

from pydantic import ValidationError

from onair.api.calltype import CallType
from onair.api.agent import RecorderStatus
from onair.api.conditions import BROADCASTING_FAILED
from onair.api.livestream import LivestreamSpec
from onair.render import credentials as rcreds
from onair.render import grants
from onair.render.child_names import child_name, slot_of
from onair.render.children import RenderedChildren, render_children
from onair.render.lifecycle import desired_lifecycle, to_agent_desired
from onair.render.resolve import Problem, resolve
from onair.render.status import broadcast_problem, input_live, livestream_status, status_patch
from onair.render.urls import IngestExposure, render_urls

from . import events, members, recordings, refusals, rollout
from .apply import apply_children
from .calltype import calltype_version
from onair.kube import KINDS, LIVESTREAM, KubeError
from .runtime import LivestreamState, Runtime

log = logging.getLogger("onair.controller")

# After the agents are told something new (a spec edit, a phase reached by the clock), how long
# to poll them every CONVERGE_POLL_SECONDS: long enough for a recording or a broadcast to start.
CONVERGE_WINDOW_SECONDS = 10.0
CONVERGE_POLL_SECONDS = 1.0

APPLY_FAILED = "ApplyFailed"
INVALID_CALLTYPE = "InvalidCallType"
AGENT_REFUSED_CREDENTIAL = "AgentRefusedCredential"
SECRET = KINDS[("v1", "Secret")]


def plain(body: Mapping) -> dict:
    """A detached plain-dict copy of a kopf body (kopf bodies are live views)."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.get("metadata") or {}),
        "spec": _deep(body.get("spec") or {}),
        "status": _deep(body.get("status") or {}),
    }


_SCALARS = (str, int, float, type(None))


def _deep(value: Any) -> Any:
    # Concrete types first: the ABC check on every leaf was 60% of an idle status poll.
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict) or isinstance(value, Mapping):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep(v) for v in value]
    return value


def _calltype(rt: Runtime, name: str) -> tuple[Optional[CallType], Optional[str], Optional[Problem]]:
    """The CallType ``name`` parsed, its version, or why it is unusable; parsed once per version
    (a CallType edit fans out to every Livestream that uses it)."""
    body = rt.calltype_body(name)
    if body is None:
        return None, None, None
    version = calltype_version(body)
    cached = rt.parsed_calltypes.get(name)
    if cached is not None and cached[0] == version:
        model, problem = cached[1], cached[2]
        return model, version if model is not None else None, problem
    try:
        model = CallType.model_validate(
            {k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec") if body.get(k) is not None}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        problem = Problem(
            INVALID_CALLTYPE,
            f"CallType {name!r} is invalid at {where}: {first['msg']}; "
            "fix the CallType (kubectl edit calltype " + name + ")",
        )
        rt.parsed_calltypes[name] = (version, None, problem)
        return None, None, problem
    rt.parsed_calltypes[name] = (version, model, None)
    return model, version, None


async def _credentials(rt: Runtime, state: LivestreamState) -> rcreds.Credentials:
    """The Secret is the source of truth; memory only restores a Secret someone deleted."""
    secret = await rt.kube.get(SECRET, state.namespace, rcreds.secret_name(state.name))
    creds = rcreds.credentials_from_secret_data((secret or {}).get("data"))
    if creds is None:
        creds = state.credentials or rcreds.generate_credentials()
    state.credentials = creds
    return creds


# A child the API server rejected stays rejected until the spec or CallType changes; retrying
# every poll would only load the API server.
APPLY_FAILED_RETRY_SECONDS = 60.0


def needs_apply(rt: Runtime, state: LivestreamState, ls: Mapping) -> bool:
    if state.dirty:
        return True
    ct_version = calltype_version(rt.calltype_body(ls["spec"].get("callType", "")))
    inputs = (ls["metadata"].get("generation"), ct_version)
    now = rt.clock()
    if state.problem is not None and state.problem.reason == APPLY_FAILED and state.failed_inputs == inputs:
        return state.failed_at is None or (now - state.failed_at).total_seconds() >= APPLY_FAILED_RETRY_SECONDS
    if state.rendered is None:
        return True
    if state.rendered_generation != inputs[0] or state.rendered_calltype != inputs[1]:
        return True
    if members.tokens_due(state, now):
        return True
    return state.applied_at is None or (now - state.applied_at).total_seconds() >= rt.resync_seconds


async def sync_children(rt: Runtime, state: LivestreamState, ls: Mapping, body: Mapping) -> None:
    """Render and apply. Sets ``state.problem`` for user-fixable failures; raises KubeError if transient."""
    reasons = sorted(state.dirty)
    state.dirty.clear()
    name = ls["spec"].get("callType", "")
    calltype, calltype_rv, problem = _calltype(rt, name)
    resolved = None
    if problem is None:
        # The one parse of this generation's spec and merge of its settings: the render, the
        # lifecycle and every status poll until the next generation use these.
        resolved = resolve(ls, calltype)
        problem = resolved.problem
    if problem is not None or resolved is None:
        state.problem, state.lifecycle = problem, None
        state.rendered_generation = ls["metadata"].get("generation")
        return
    try:
        creds = await _credentials(rt, state)
        rendered = render_children(
            ls,
            calltype,
            rt.config,
            creds,
            now=rt.clock(),
            exposure=ingest_exposures(rt, state.namespace, state.name),
            turn_secret=rt.config.read_turn_secret(),
            resolved=resolved,
        )
        ingest_rollout = await rollout.plan(rt, state, rendered, ls.get("status"))
    except KubeError:
        state.dirty.update(reasons or {"retry"})
        raise
    except Exception as exc:  # noqa: BLE001 - a render bug must surface as a condition, not kill the loop
        log.exception("rendering %s/%s failed", state.namespace, state.name)
        state.problem = Problem("RenderFailed", f"could not render the children: {type(exc).__name__}: {exc}")
        return
    full = state.applied_at is None or (rt.clock() - state.applied_at).total_seconds() >= rt.resync_seconds
    if full:
        # The periodic resync re-applies everything, whatever the digests say (after a restart
        # there are none: children the live objects show untouched are still skipped).
        state.children.digests.clear()
    try:
        result = await apply_children(
            rt.kube,
            rollout.staggered(rendered, ingest_rollout),
            ls["metadata"],
            state.children.versions,
            known=rt.known_children(state.namespace, state.name),
            applied_digests=state.children.digests,
        )
    except KubeError as exc:
        if exc.transient:
            state.dirty.update(reasons or {"retry"})
            raise
        where = f" ({exc.what})" if exc.what else ""
        state.problem = Problem(APPLY_FAILED, f"the API server rejected a child object{where}: {exc.message}")
        state.rendered_generation = ls["metadata"].get("generation")
        state.failed_inputs = (ls["metadata"].get("generation"), calltype_rv)
        state.failed_at = rt.clock()
        return
    state.children.record(result.versions, result.digests)
    rollout.applied(state, body, rendered, ingest_rollout)
    for gone in result.pruned:
        kind, _, obj = gone.partition(" ")
        state.children.forget((kind, obj))
    first = state.rendered is None
    state.problem = None
    # The applied manifests are not needed after this (status reads URLs, settings and agent
    # keys) and were most of a stream's memory (~50 KB, the credentials Secret among them).
    state.rendered = replace(rendered, objects=[], keep=[])
    state.rendered_generation = ls["metadata"].get("generation")
    state.rendered_calltype = calltype_rv
    if full:
        state.applied_at = rt.clock()
    members.report_unknown_roles(state, body, rendered)
    drift = [r for r in reasons if r.startswith("child ")]
    if result.changed or result.created or result.pruned:
        log.info(
            "%s/%s: applied %s%s%s",
            state.namespace,
            state.name,
            ", ".join(result.changed) or "nothing new",
            f"; created {', '.join(result.created)}" if result.created else "",
            f"; pruned {', '.join(result.pruned)}" if result.pruned else "",
        )
        if drift and not first:
            events.normal(
                body, "DriftCorrected", f"Restored children changed outside the operator: {'; '.join(drift)}"[:1000]
            )
        if result.pruned:
            events.normal(body, "ChildrenPruned", f"Deleted children no longer needed: {', '.join(result.pruned)}")


def _parse_time(value: Any) -> Optional[datetime]:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


async def _dvr_clear(
    rt: Runtime, state: LivestreamState, ls: Mapping, body: Mapping, stored: Mapping
) -> Optional[datetime]:
    wanted = _parse_time(ls["spec"].get("dvrClearedAt"))
    if wanted is None or state.rendered is None or "origin" not in state.rendered.agent_configs:
        return None
    wanted = wanted.replace(microsecond=0)
    done = _parse_time(stored.get("dvrClearedAt"))
    if done is not None and done >= wanted:
        return None
    ok, why = await rt.agent_client.clear_dvr(state.namespace, state.name, token=_agent_token(state))
    if ok:
        return wanted
    marker = wanted.isoformat()
    if state.dvr_warned_for != marker:
        state.dvr_warned_for = marker
        events.warn(body, "DvrClearPending", f"Could not clear the DVR yet ({why}); retrying every poll.")
    return None


async def sync_status(
    rt: Runtime, state: LivestreamState, ls: Mapping, body: Mapping, poll_agents: bool = True
) -> None:
    now = rt.clock()
    stored = state.status if state.status is not None else dict(ls.get("status") or {})
    generation = ls["metadata"].get("generation")
    if state.problem is not None or state.rendered is None:
        new = livestream_status(
            lifecycle=None,
            rendered=None,
            agents={},
            previous=stored,
            generation=generation,
            now=now,
            problem=state.problem,
        )
        await write_status(rt, state, body, stored, new)
        return
    rendered = state.rendered
    # What this generation rendered from (a new generation is rendered before its status).
    spec = rendered.spec if rendered.spec is not None else LivestreamSpec.model_validate(ls["spec"])
    if rt.config.ingest_service_type != "ClusterIP":
        rendered = state.rendered = with_public_ingest(rt, state, spec, rendered)
    lifecycle = desired_lifecycle(spec, rendered.effective, now)
    state.lifecycle = lifecycle
    if poll_agents:
        # Which sources exist is the render's business, not the lifecycle's.
        desired = to_agent_desired(lifecycle, generation or 0).model_copy(
            update={
                "backup": "ingest-backup" in rendered.agent_configs,
                "members": grants.publish_members(spec, rendered.members),
            }
        )
        if desired != state.desired_sent:
            state.desired_sent = desired
            state.converging_until = now + timedelta(seconds=CONVERGE_WINDOW_SECONDS)
        state.agents = await rt.agent_client.poll(
            state.namespace, state.name, list(rendered.agent_configs), desired, token=_agent_token(state)
        )
        rt.metrics.agents_polled(state.agents)
        _watch_agent_credentials(state, body)
    cleared = await _dvr_clear(rt, state, ls, body, stored) if poll_agents else None
    agents = {key: (r.status if r.reachable else None) for key, r in state.agents.items()}
    if poll_agents:
        _watch_broadcast(rt, state, body, agents, now)
        if state.refusals is None:
            state.refusals = refusals.RefusalAnnouncer(rt.refusal_event_interval_seconds)
        refusals.announce(state.refusals, body, agents, state.namespace, state.name, rendered.credentials_secret, now)
    recorder = agents.get("recorder")
    if poll_agents and isinstance(recorder, RecorderStatus):
        # Before the status names them: a Recording named in status.recordings exists.
        await recordings.sync(rt, state, ls, body, recorder)
    missing = [key for key in rendered.agent_configs if agents.get(key) is None]
    if poll_agents and missing:
        state.pod_problems = _pod_problems(rt, state, missing)
    elif not missing:
        state.pod_problems = {}
    new = livestream_status(
        lifecycle=lifecycle,
        rendered=rendered,
        agents=agents,
        previous=stored,
        name=state.name,
        generation=state.rendered_generation,
        now=now,
        dvr_cleared_at=cleared,
        broadcast_failure=state.broadcast_failure,
        pod_problems=state.pod_problems,
        ingest_rollout=state.ingest_rollout.message if state.ingest_rollout.held else None,
        origin_replicas_reachable=state.agents["origin"].replicas_reachable if "origin" in state.agents else None,
    )
    await write_status(rt, state, body, stored, new)


def ingest_exposures(rt: Runtime, namespace: str, name: str) -> dict[str, IngestExposure]:
    """Per slot, what Kubernetes assigned to the ingest Service (nodePorts, load balancer address)
    and the node its pod runs on, as the watches last saw them."""
    exposure: dict[str, IngestExposure] = {}
    for key in ("ingest", "ingest-backup"):
        seen = rt.ingest_services.get((namespace, name, key))
        if seen is not None:
            exposure[slot_of(key)] = replace(seen, node_address=rt.host_ips.get((namespace, name, key)))
    return exposure


def with_public_ingest(
    rt: Runtime, state: LivestreamState, spec: LivestreamSpec, rendered: RenderedChildren
) -> RenderedChildren:
    """The render with the ingest URLs encoders outside the cluster dial: the nodePorts and load
    balancer address Kubernetes assigned after the Services were applied, and the ingest pods' nodes."""
    exposure = ingest_exposures(rt, state.namespace, state.name)
    urls = render_urls(state.name, state.namespace, spec, rendered.effective, rt.config, exposure)
    return rendered if urls == rendered.urls else replace(rendered, urls=urls)


def _pod_problems(rt: Runtime, state: LivestreamState, keys: list[str]) -> dict[str, str]:
    """Why the pods of the agents ``keys`` (which do not answer) are not running, as the pods
    watch last saw them (one line per agent; the first pod by name when several have one)."""
    out: dict[str, str] = {}
    for key in keys:
        problems = rt.pod_problems.get((state.namespace, state.name, key))
        if problems:
            out[key] = problems[min(problems)]
    return out


def _agent_token(state: LivestreamState) -> Optional[str]:
    return state.credentials.agent_token if state.credentials is not None else None


def _watch_agent_credentials(state: LivestreamState, body: Mapping) -> None:
    """One Warning per agent that starts refusing the operator's agent token, again only after it
    accepted it in between: the stream is not live while its agents refuse the control plane."""
    refusing = {key: r.refused for key, r in state.agents.items() if r.refused}
    for key in sorted(set(refusing) - state.agents_refusing):
        secret = rcreds.secret_name(state.name)
        events.warn(
            body,
            AGENT_REFUSED_CREDENTIAL,
            (
                f"The {key} agent refuses the operator's agent token ({refusing[key]}), so its status is unknown and "
                f"the desired state does not reach it. Its pod must mount key {rcreds.AGENT_TOKEN} of Secret {secret}: "
                "after the key was changed the kubelet updates the file within about a minute; otherwise delete the "
                "pod so that it restarts with the current Secret."
            )[:1000],
        )
    state.agents_refusing = frozenset(refusing)


def _watch_broadcast(
    rt: Runtime, state: LivestreamState, body: Mapping, agents: Mapping[str, Any], now: datetime
) -> None:
    """A failure that outlasts the grace period (a transcoder starting needs a few seconds to its
    first segment) becomes ``state.broadcast_failure``: a BroadcastingFailed Warning Event once,
    Ready=False for as long as it lasts, BroadcastingRecovered after."""
    assert state.lifecycle is not None and state.rendered is not None
    live, backup_live = input_live(state.rendered, agents)
    problem = broadcast_problem(state.lifecycle.outputs, live or bool(backup_live), agents.get("transcoder"))
    if problem is None:
        state.broadcast_failing_since = None
        if state.broadcast_failure is not None:
            state.broadcast_failure = None
            events.normal(body, "BroadcastingRecovered", "HLS/DASH broadcasting is producing segments again.")
        return
    if state.broadcast_failing_since is None:
        state.broadcast_failing_since = now
    if (now - state.broadcast_failing_since).total_seconds() < rt.broadcast_grace_seconds:
        return
    transcoder = f"deploy/{child_name(state.name, 'transcoder')}"
    message = (
        f"HLS/DASH broadcasting should be on and the input is live, but {problem}. The transcoder "
        f"retries by itself; its log says why: kubectl logs -n {state.namespace} {transcoder}"
    )
    if state.broadcast_failure is None:
        events.warn(body, BROADCASTING_FAILED, message)
    state.broadcast_failure = message


async def write_status(rt: Runtime, state: LivestreamState, body: Mapping, stored: Mapping, new: dict) -> None:
    # Queued before the status shows the transition: a crash in between queues it again, never loses it.
    effective = state.rendered.effective if state.rendered is not None else None
    await rt.webhooks.enqueue(state.namespace, state.name, state.uid, effective, stored, new, now=rt.clock())
    patch = status_patch(stored, new)
    if not patch:
        state.status = dict(stored)
        return
    response = await rt.kube.patch_status(LIVESTREAM, state.namespace, state.name, patch)
    state.status = dict((response or {}).get("status") or new)
    events.post(body, events.transition_events(stored, state.status))
