"""Rolling a Livestream's two ingest slots one after the other when their pod template changes.

The encoder pushes to the main and the backup ingest, and the transcoder fails over between them
in a second or two. A new pod template for both (a new image after ``helm upgrade``, a config
change that needs a restart) would otherwise reach both Deployments in the same apply, restart
both pods together and leave viewers with no source at all, which is what the backup is for.

So the slot not feeding the transcoder (normally the backup) rolls first, and the other slot's
Deployment gets its new template *paused* (``spec.paused``, what ``kubectl rollout pause``
does: the Deployment controller keeps the running ReplicaSet and starts no new one). It is
resumed once the first slot's rollout is complete (its new pod Ready, no old pod left) and its
publisher is back (the ingest agent reports ``receiving``), or at most ``PUBLISHER_RETURN_SECONDS``
after that if no encoder reconnects to it. Nothing is held forever: after
``HOLD_MAX_SECONDS`` the second slot rolls whatever the first one's state, with a Warning Event.

Level-based: every decision is derived from the two Deployments as the API server has them (the
hold is ``spec.paused`` plus the ``HELD_SINCE_ANNOTATION`` on the held one, which survive an
operator restart, e.g. the one ``helm upgrade`` itself causes) and from the agents' last reports.
Pure: the controller reads, decides with ``plan_ingest_rollout`` and applies
``apply_ingest_rollout``'s objects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional

from onair.api.conditions import INGEST_ROLLOUT_CONTINUED, INGEST_ROLLOUT_NOT_BRIDGED, INGEST_ROLLOUT_STAGGERED
from onair.render.conditions import parse_rfc3339, rfc3339

MAIN, BACKUP = "ingest", "ingest-backup"
# On every Deployment the operator renders: the hash of the pod template it applied, so the next
# render knows whether applying would start a rollout (the template as the API server returns it
# carries defaults and cannot be compared with the rendered one).
TEMPLATE_HASH_ANNOTATION = "onair.dev/pod-template-sha256"
# On the held (paused) ingest Deployment only: when the hold began, the bound's starting point.
HELD_SINCE_ANNOTATION = "onair.dev/rollout-held-since"
# The longest the second slot waits for the first one's rollout: a first slot that cannot start
# (an image its node cannot pull, a crash loop) does not keep the new template from the second
# forever. Longer than an image pull and a start on a busy node.
HOLD_MAX_SECONDS = 300.0
# How long the second slot waits, once the first slot's new pod is Ready, for that slot's encoder
# to reconnect (OBS retries every 2–10 s). A slot no encoder pushes to waits this long for nothing.
PUBLISHER_RETURN_SECONDS = 30.0


def template_hash(template: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class SlotDeployment:
    """One ingest Deployment as the API server has it, reduced to what the decision needs."""

    template_hash: Optional[str]  # the annotation; None from an operator that did not write it
    held_since: Optional[datetime]
    paused: bool
    rolled_out: bool  # what `kubectl rollout status` calls complete: new template, every pod available, no old pod
    rolled_out_at: Optional[datetime]  # when the Deployment controller last saw it complete
    pods: str  # for messages, e.g. "0 of 1 pods updated and available"


def observe_deployment(deployment: Mapping[str, Any]) -> SlotDeployment:
    meta = deployment.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    available = status.get("availableReplicas") or 0
    total = status.get("replicas") or 0
    paused = bool(spec.get("paused"))
    rolled_out = (
        not paused
        and (status.get("observedGeneration") or 0) >= (meta.get("generation") or 0)
        and updated == wanted
        and total == wanted
        and available >= wanted
    )
    progressing: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or () if c.get("type") == "Progressing"), {}
    )
    done_at = (
        parse_rfc3339(progressing.get("lastUpdateTime"))
        if progressing.get("reason") == "NewReplicaSetAvailable"
        else None
    )
    pods = f"{min(updated, available)} of {wanted} pods updated and available"
    if total > updated:
        pods += f", {total - updated} old left"
    return SlotDeployment(
        template_hash=annotations.get(TEMPLATE_HASH_ANNOTATION),
        held_since=parse_rfc3339(annotations[HELD_SINCE_ANNOTATION])
        if annotations.get(HELD_SINCE_ANNOTATION)
        else None,
        paused=paused,
        rolled_out=rolled_out,
        rolled_out_at=done_at,
        pods=pods,
    )


@dataclass(frozen=True)
class RolloutEvent:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class IngestRollout:
    """What to apply now: ``held`` (a key, or None) gets its new template paused, marked held since
    ``held_since``; ``first`` is the slot rolling meanwhile. ``event``: the transition this decision
    makes (to post once it is applied). ``recheck_at``: when the decision changes by time alone."""

    held: Optional[str] = None
    first: Optional[str] = None
    held_since: Optional[datetime] = None
    event: Optional[RolloutEvent] = None
    message: str = ""  # while held: the Reconciling condition's message
    recheck_at: Optional[datetime] = None


NO_HOLD = IngestRollout()


def _other(key: str) -> str:
    return BACKUP if key == MAIN else MAIN


def _hold_message(first: str, second: str, since: datetime) -> str:
    return (
        f"rolling the ingest slots one after the other: {first} first, while {second} keeps its running "
        f"pod; {second} follows once {first}'s new pod is Ready and its encoder has reconnected "
        f"(at the latest {rfc3339(since + timedelta(seconds=HOLD_MAX_SECONDS))})"
    )


def plan_ingest_rollout(
    desired: Mapping[str, str],
    observed: Mapping[str, Optional[SlotDeployment]],
    receiving: Mapping[str, Optional[bool]],
    active_source: Optional[str],
    now: datetime,
) -> IngestRollout:
    """Which ingest slot's new template to hold back now.

    ``desired``: rendered ingest keys -> ``template_hash`` of the pod template about to be applied;
    ``observed``: key -> the Deployment as it is (None: not created yet); ``receiving``: key -> the
    ingest agent's last report (None: unknown, e.g. right after an operator restart);
    ``active_source``: the transcoder's (main, backup or None).
    """
    if MAIN not in desired or BACKUP not in desired:
        return NO_HOLD  # one slot: nothing to bridge with
    main, backup = observed.get(MAIN), observed.get(BACKUP)
    if main is None or backup is None:
        return NO_HOLD  # a slot being created has nothing to keep running
    slots = {MAIN: main, BACKUP: backup}
    held = next((key for key in (MAIN, BACKUP) if slots[key].held_since is not None), None)
    if held is None:
        changing = [key for key in (MAIN, BACKUP) if slots[key].template_hash != desired[key]]
        if len(changing) < 2:
            return NO_HOLD
        if receiving.get(MAIN) is False and receiving.get(BACKUP) is False:
            return NO_HOLD  # no encoder on either: no show to keep on air
        first = MAIN if active_source == "backup" else BACKUP
        second = _other(first)
        feeding = f"{second} feeds the transcoder" if active_source else f"{second} is the one kept"
        return IngestRollout(
            held=second,
            first=first,
            held_since=now,
            message=_hold_message(first, second, now),
            recheck_at=now + timedelta(seconds=HOLD_MAX_SECONDS),
            event=RolloutEvent(
                "Normal",
                INGEST_ROLLOUT_STAGGERED,
                (
                    f"The ingest pod template changed for both slots: rolling {first} first ({feeding}); {second} "
                    f"keeps its running pod until {first}'s new pod is Ready and its encoder has reconnected."
                ),
            ),
        )

    second, first = held, _other(held)
    since = slots[second].held_since
    assert since is not None
    state = slots[first]
    deadline = since + timedelta(seconds=HOLD_MAX_SECONDS)
    hold = IngestRollout(
        held=second, first=first, held_since=since, message=_hold_message(first, second, since), recheck_at=deadline
    )
    if receiving.get(MAIN) is False and receiving.get(BACKUP) is False:
        return IngestRollout(
            event=RolloutEvent(
                "Normal",
                INGEST_ROLLOUT_CONTINUED,
                (
                    f"Rolling {second} now: no encoder is pushing to either slot, so there is no show to keep on air "
                    f"while {first} rolls ({state.pods})."
                ),
            )
        )
    if state.rolled_out and state.template_hash == desired[first]:
        if receiving.get(first):
            return IngestRollout(
                event=RolloutEvent(
                    "Normal",
                    INGEST_ROLLOUT_CONTINUED,
                    (
                        f"{first} is rolled out and its encoder is back: rolling {second} now (the transcoder "
                        f"fails over to {first} meanwhile)."
                    ),
                )
            )
        done_at = max(state.rolled_out_at or since, since)
        give_up = done_at + timedelta(seconds=PUBLISHER_RETURN_SECONDS)
        if now >= give_up:
            return IngestRollout(
                event=RolloutEvent(
                    "Warning",
                    INGEST_ROLLOUT_NOT_BRIDGED,
                    (
                        f"{first} is rolled out but no encoder reconnected to it within {PUBLISHER_RETURN_SECONDS:.0f} s: "
                        f"rolling {second} now; viewers get no picture until an encoder reconnects to one of them."
                    ),
                )
            )
        return IngestRollout(
            held=second, first=first, held_since=since, message=hold.message, recheck_at=min(give_up, deadline)
        )
    if now >= deadline:
        return IngestRollout(
            event=RolloutEvent(
                "Warning",
                INGEST_ROLLOUT_NOT_BRIDGED,
                (
                    f"{first} did not roll out within {HOLD_MAX_SECONDS:.0f} s ({state.pods}): rolling {second} anyway so "
                    f"its new template is not held back forever; viewers get no picture until one of them has a "
                    f"Ready pod and an encoder again. See `kubectl describe deployment` and the pods' Events."
                ),
            )
        )
    return hold


def apply_ingest_rollout(deployment: dict, key: str, plan: IngestRollout) -> dict:
    """The rendered Deployment of ingest ``key`` as the plan wants it applied: paused and marked
    held when it is the held slot, unchanged otherwise (server-side apply then drops ``paused`` and
    the mark, which only the operator set, and the Deployment controller rolls it)."""
    if plan.held != key or plan.held_since is None:
        return deployment
    out = {**deployment, "metadata": dict(deployment["metadata"]), "spec": {**deployment["spec"], "paused": True}}
    out["metadata"]["annotations"] = {
        **(deployment["metadata"].get("annotations") or {}),
        HELD_SINCE_ANNOTATION: rfc3339(plan.held_since),
    }
    return out
