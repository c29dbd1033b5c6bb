"""Status conditions as plain dicts (what goes into ``status.conditions``), kstatus-style.

``Ready`` is always present. ``Reconciling`` and ``Stalled`` are "abnormal-true" conditions: present
only while True, removed otherwise, which is how kstatus (Flux, Argo CD, ``kubectl wait``) reads them.
A condition keeps its ``lastTransitionTime`` as long as its status does not change, so re-deriving
the same conditions every poll yields the same list and no status patch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Optional

from onair.api.conditions import READY, RECONCILING, STALLED, ConditionStatus


def rfc3339(value: datetime) -> str:
    """Kubernetes' metav1.Time spelling: UTC, whole seconds, trailing Z."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: object) -> Optional[datetime]:
    """A metav1.Time string (as ``rfc3339`` writes it) back to an aware datetime; None if it is not one."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _status(value: bool | str) -> ConditionStatus:
    if isinstance(value, bool):
        return "True" if value else "False"
    if value not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {value!r}")
    return value  # type: ignore[return-value]


def find_condition(conditions: Optional[Iterable[dict]], type_: str) -> Optional[dict]:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def set_condition(
    conditions: Optional[list[dict]],
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: Optional[int],
    now: datetime,
) -> list[dict]:
    """A new list with condition ``type_`` set; the input is not modified.

    ``lastTransitionTime`` is kept from the existing condition when its status is unchanged,
    otherwise it becomes ``now``. The order of the other conditions is preserved; a new type is
    appended.
    """
    status = _status(status)
    previous = find_condition(conditions, type_)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        transition = previous["lastTransitionTime"]
    else:
        transition = rfc3339(now)
    cond = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": transition}
    if generation is not None:
        cond["observedGeneration"] = generation
    out = [dict(c) for c in conditions or () if c.get("type") != type_]
    if previous is None:
        return [*out, cond]
    index = [c.get("type") for c in conditions or ()].index(type_)  # previous was found in them
    out.insert(index, cond)
    return out


def remove_condition(conditions: Optional[list[dict]], type_: str) -> list[dict]:
    return [dict(c) for c in conditions or () if c.get("type") != type_]


def kstatus_conditions(
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: str,
    message: str,
    *,
    generation: Optional[int],
    now: datetime,
    previous: Optional[list[dict]] = None,
) -> list[dict]:
    """Ready/Reconciling/Stalled from three booleans, keeping unrelated conditions of ``previous``.

    ``reason``/``message`` describe the current state and are used for Ready and for whichever of
    Reconciling/Stalled is True. A stalled or reconciling object is never Ready, whatever
    ``ready`` says. Ready comes first, then Reconciling, then Stalled.
    """
    ready = ready and not stalled and not reconciling
    conds = set_condition(previous, READY, ready, reason, message, generation, now)
    for type_, on in ((RECONCILING, reconciling), (STALLED, stalled)):
        if on:
            conds = set_condition(conds, type_, True, reason, message, generation, now)
        else:
            conds = remove_condition(conds, type_)
    order = {READY: 0, RECONCILING: 1, STALLED: 2}
    return sorted(conds, key=lambda c: order.get(c.get("type") or "", 3))
