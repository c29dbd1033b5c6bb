"""Errors a user can cause past admission become conditions and Events, and heal when fixed."""

from __future__ import annotations

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import condition

pytestmark = pytest.mark.cluster


def test_child_rejected_by_the_api_server_is_a_condition_not_a_crash(operator, kube, calltype, namespace):
    # The CRD accepts any string here; the PersistentVolumeClaim API does not.
    kube.create_livestream(
        namespace,
        "badclass",
        {
            "callType": calltype,
            "settingsOverride": {"recording": {"mode": "auto-on", "storage": {"storageClassName": "Not_A_Class"}}},
        },
    )
    obj = kube.wait_status(
        namespace,
        "badclass",
        lambda s: (condition(s, "Stalled") or {}).get("reason") == "ApplyFailed",
        what="ApplyFailed",
    )
    stalled = condition(obj["status"], "Stalled")
    assert "the API server rejected a child object" in stalled["message"]
    assert "storageClassName" in stalled["message"] and "Not_A_Class" in stalled["message"]
    assert condition(obj["status"], "Ready")["status"] == "False"
    wait_for(lambda: "ApplyFailed" in kube.event_reasons(namespace, "badclass"), 15, what="ApplyFailed Event")
    operator.check()

    kube.patch_livestream(
        namespace,
        "badclass",
        {"spec": {"settingsOverride": {"recording": {"mode": "auto-on", "storage": {"storageClassName": "standard"}}}}},
    )
    obj = kube.wait_status(
        namespace,
        "badclass",
        lambda s: condition(s, "Stalled") is None and s.get("observedGeneration") == 2,
        what="recovered",
    )
    pvc = kube.core.read_namespaced_persistent_volume_claim("badclass-recordings", namespace)
    assert pvc.spec.storage_class_name == "standard"
    wait_for(lambda: "Recovered" in kube.event_reasons(namespace, "badclass"), 15, what="Recovered Event")
