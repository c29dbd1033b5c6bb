"""An operator restart loses nothing and duplicates nothing: all state is in the cluster."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import condition

pytestmark = pytest.mark.cluster


def test_restart_keeps_children_status_and_secrets(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "steady", {"callType": calltype, "phase": "live"})
    before_obj = kube.wait_reconciled(namespace, "steady")
    before = kube.resource_versions(namespace, "steady")
    secret = kube.core.read_namespaced_secret("steady-credentials", namespace).data
    status = before_obj["status"]

    with operator.stopped():
        # While the operator is down: a spec change, a deleted child, a new Livestream.
        kube.patch_livestream(namespace, "steady", {"spec": {"settingsOverride": {"dvr": {"durationSeconds": 900}}}})
        kube.core.delete_namespaced_service("steady-origin", namespace)
        kube.create_livestream(namespace, "newcomer", {"callType": calltype})

    obj = kube.wait_reconciled(namespace, "steady")
    assert obj["status"]["observedGeneration"] == 2
    assert kube.configmap_json(namespace, "steady-origin")["dvrWindowSeconds"] == 900
    kube.wait_reconciled(namespace, "newcomer")

    after = kube.resource_versions(namespace, "steady")
    assert set(after) == set(before), "same children, none duplicated or missing"
    assert kube.core.read_namespaced_secret("steady-credentials", namespace).data == secret
    assert after[("Secret", "steady-credentials")] == before[("Secret", "steady-credentials")]
    changed = {k for k in after if after[k] != before[k]}
    # Only what the spec change touches (the origin's config and its pod template hash) and the
    # re-created Service moved.
    assert changed == {("ConfigMap", "steady-origin"), ("Deployment", "steady-origin"), ("Service", "steady-origin")}

    st = obj["status"]
    for key in ("phase", "credentialsSecret", "ingest", "playback", "viewersAllowed", "broadcasting"):
        assert st[key] == status[key], key
    # Conditions keep their transition times across the restart (nothing transitioned).
    assert condition(st, "Ready")["lastTransitionTime"] == condition(status, "Ready")["lastTransitionTime"]
    # One finalizer, not one per operator start.
    assert obj["metadata"]["finalizers"] == ["onair.dev/finalizer"]


def test_restart_does_not_repeat_events(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "quiet", {"callType": calltype, "phase": "live"})
    kube.wait_reconciled(namespace, "quiet")
    wait_for(lambda: "WentLive" in kube.event_reasons(namespace, "quiet"), 15, what="WentLive")

    def counts_now() -> dict:
        return {e["reason"]: e.get("count", 1) for e in kube.events(namespace, "quiet")}

    # The Events of one reconcile are posted one by one (WentLive, then BroadcastingStarted ...):
    # take the snapshot only once two polls in a row saw the same set.
    seen: list[dict] = []

    def settled() -> bool:
        seen.append(counts_now())
        time.sleep(operator.poll_interval)
        return len(seen) >= 2 and seen[-1] == seen[-2] == counts_now()

    wait_for(settled, 30, what="the Events of the first reconcile to settle")
    counts = seen[-1]
    operator.stop()
    operator.start()
    kube.wait_reconciled(namespace, "quiet")
    # A few polls after the restart: still the same Events, each posted once.
    time.sleep(3 * operator.poll_interval)
    assert {e["reason"]: e.get("count", 1) for e in kube.events(namespace, "quiet")} == counts
