from datetime import datetime, timedelta, timezone

import pytest

from onair.api.conditions import Condition
from onair.render.conditions import find_condition, kstatus_conditions, rfc3339, set_condition

T0 = datetime(2025, 7, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
T1 = T0 + timedelta(minutes=5)


def test_rfc3339_is_utc_whole_seconds():
    assert rfc3339(T0) == "2025-07-01T12:00:00Z"
    assert rfc3339(datetime(2025, 7, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))) == "2025-07-01T12:00:00Z"
    assert rfc3339(datetime(2025, 7, 1, 12, 0)) == "2025-07-01T12:00:00Z"


def test_new_condition_gets_now_and_validates_as_metav1_condition():
    conds = set_condition(None, "Ready", False, "Starting", "pods starting", 3, T0)
    assert conds == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Starting",
            "message": "pods starting",
            "lastTransitionTime": "2025-07-01T12:00:00Z",
            "observedGeneration": 3,
        }
    ]
    Condition.model_validate(conds[0])


def test_transition_time_kept_while_status_unchanged_even_if_reason_changes():
    first = set_condition(None, "Ready", False, "Starting", "a", 1, T0)
    second = set_condition(first, "Ready", "False", "StillStarting", "b", 2, T1)
    assert second[0]["lastTransitionTime"] == rfc3339(T0)
    assert (second[0]["reason"], second[0]["message"], second[0]["observedGeneration"]) == ("StillStarting", "b", 2)
    third = set_condition(second, "Ready", True, "Ready", "ok", 2, T1)
    assert third[0]["lastTransitionTime"] == rfc3339(T1)


def test_set_condition_preserves_order_and_input():
    conds = [
        {"type": "A", "status": "True", "reason": "r", "message": "", "lastTransitionTime": "x"},
        {"type": "B", "status": "True", "reason": "r", "message": "", "lastTransitionTime": "y"},
    ]
    snapshot = [dict(c) for c in conds]
    out = set_condition(conds, "A", False, "R", "m", None, T0)
    assert [c["type"] for c in out] == ["A", "B"] and conds == snapshot
    assert "observedGeneration" not in out[0]
    assert [c["type"] for c in set_condition(conds, "C", True, "R", "m", None, T0)] == ["A", "B", "C"]


def test_invalid_status_is_refused():
    with pytest.raises(ValueError):
        set_condition(None, "Ready", "yes", "R", "m", None, T0)


def types(conds):
    return {c["type"]: c["status"] for c in conds}


def test_kstatus_ready():
    conds = kstatus_conditions(True, False, False, "AgentsReady", "ok", generation=4, now=T0)
    assert types(conds) == {"Ready": "True"}


def test_kstatus_reconciling_is_never_ready_and_abnormal_true_conditions_disappear():
    rec = kstatus_conditions(True, True, False, "Progressing", "rolling out", generation=1, now=T0)
    assert types(rec) == {"Ready": "False", "Reconciling": "True"}
    assert find_condition(rec, "Reconciling")["reason"] == "Progressing"
    done = kstatus_conditions(True, False, False, "AgentsReady", "ok", generation=1, now=T1, previous=rec)
    assert types(done) == {"Ready": "True"}
    assert find_condition(done, "Ready")["lastTransitionTime"] == rfc3339(T1)


def test_kstatus_stalled_keeps_foreign_conditions_after_its_own():
    previous = [{"type": "Custom", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "t"}]
    conds = kstatus_conditions(
        False, False, True, "CallTypeNotFound", "missing", generation=2, now=T0, previous=previous
    )
    assert [c["type"] for c in conds] == ["Ready", "Stalled", "Custom"]
    assert find_condition(conds, "Ready")["reason"] == "CallTypeNotFound"


def test_kstatus_is_stable_when_nothing_changes():
    a = kstatus_conditions(False, True, False, "R", "m", generation=1, now=T0)
    b = kstatus_conditions(False, True, False, "R", "m", generation=1, now=T1, previous=a)
    assert a == b
