"""CallTypes as the operator sees them: missing, appearing, changing, counted, deleted."""

from __future__ import annotations

import secrets

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import GROUP, VERSION, condition

pytestmark = pytest.mark.cluster


@pytest.fixture
def ct_name(kube):
    name = f"ct-{secrets.token_hex(3)}"
    yield name
    kube.delete_calltype(name)


def test_missing_calltype_stalls_then_recovers_by_itself(operator, kube, ct_name, namespace):
    kube.create_livestream(namespace, "early", {"callType": ct_name})

    obj = kube.wait_status(namespace, "early", lambda s: condition(s, "Stalled"), what="Stalled condition")
    st = obj["status"]
    stalled, ready = condition(st, "Stalled"), condition(st, "Ready")
    assert stalled["status"] == "True" and stalled["reason"] == "CallTypeNotFound"
    assert ready["status"] == "False" and ready["reason"] == "CallTypeNotFound"
    assert f"CallType '{ct_name}' does not exist" in ready["message"] and "create it" in ready["message"]
    assert ready["observedGeneration"] == 1
    assert not kube.children(namespace, "early"), "nothing is rendered without the CallType"
    wait_for(lambda: "CallTypeMissing" in kube.event_reasons(namespace, "early"), 15, what="CallTypeMissing Event")

    kube.create_calltype(ct_name, settings={"dvr": {"durationSeconds": 120}})
    obj = kube.wait_status(
        namespace, "early", lambda s: condition(s, "Stalled") is None and s.get("credentialsSecret"), what="recovery"
    )
    assert condition(obj["status"], "Ready")["reason"] != "CallTypeNotFound"
    assert obj["status"]["effectiveSettings"]["dvr"]["durationSeconds"] == 120
    assert kube.configmap_json(namespace, "early-origin")["dvrWindowSeconds"] == 120
    wait_for(lambda: "CallTypeFound" in kube.event_reasons(namespace, "early"), 15, what="CallTypeFound Event")


def test_calltype_change_reaches_every_livestream_using_it(operator, kube, ct_name, namespace):
    kube.create_calltype(ct_name, settings={"broadcasting": {"hls": {"qualityTracks": ["720p", "480p"]}}})
    for name in ("one", "two"):
        kube.create_livestream(namespace, name, {"callType": ct_name})
    # An override wins over the CallType for the field it names, and only that field.
    kube.create_livestream(
        namespace,
        "own",
        {"callType": ct_name, "settingsOverride": {"broadcasting": {"hls": {"qualityTracks": ["360p"]}}}},
    )
    for name in ("one", "two", "own"):
        kube.wait_reconciled(namespace, name)
    assert [r["name"] for r in kube.configmap_json(namespace, "one-transcoder")["ladder"]] == ["720p", "480p"]

    kube.patch_calltype(
        ct_name,
        {
            "spec": {
                "settings": {"broadcasting": {"hls": {"qualityTracks": ["1080p", "360p"]}, "segmentDurationSeconds": 4}}
            }
        },
    )
    for name in ("one", "two"):
        wait_for(
            lambda: (
                [r["name"] for r in kube.configmap_json(namespace, f"{name}-transcoder")["ladder"]] == ["1080p", "360p"]
            ),
            20,
            what=f"{name} ladder updated",
        )
        obj = kube.wait_status(
            namespace,
            name,
            lambda s: s["effectiveSettings"]["broadcasting"]["hls"]["qualityTracks"] == ["1080p", "360p"],
            what="effective settings updated",
        )
        assert obj["status"]["effectiveSettings"]["broadcasting"]["segmentDurationSeconds"] == 4
    own = kube.configmap_json(namespace, "own-transcoder")
    assert [r["name"] for r in own["ladder"]] == ["360p"]
    assert own["segmentSeconds"] == 4.0

    # status.livestreams counts the users.
    wait_for(lambda: (kube.calltype(ct_name).get("status") or {}).get("livestreams") == 3, 15, what="count 3")
    kube.delete_livestream(namespace, "own")
    wait_for(lambda: (kube.calltype(ct_name).get("status") or {}).get("livestreams") == 2, 30, what="count 2")


def test_deleting_a_calltype_in_use_stalls_but_keeps_the_stream_running(operator, kube, ct_name, namespace):
    kube.create_calltype(ct_name)
    kube.create_livestream(namespace, "keep", {"callType": ct_name})
    kube.wait_reconciled(namespace, "keep")
    before = kube.resource_versions(namespace, "keep")

    kube.delete_calltype(ct_name)
    obj = kube.wait_status(
        namespace,
        "keep",
        lambda s: (condition(s, "Stalled") or {}).get("reason") == "CallTypeNotFound",
        what="stalled after CallType deletion",
    )
    # Everything the stream had stays: children untouched, URLs and settings still in status.
    assert kube.resource_versions(namespace, "keep") == before
    assert obj["status"]["credentialsSecret"] == "keep-credentials"
    assert obj["status"]["ingest"]["rtmp"]

    kube.create_calltype(ct_name)
    kube.wait_status(namespace, "keep", lambda s: condition(s, "Stalled") is None, what="recovered")


class CountWatch:
    """Every value of a CallType's ``status.livestreams`` as the API server stored it, from a
    watch: a change of the value is one status patch by the operator."""

    def __init__(self, kube, name: str) -> None:
        import threading

        self.kube, self.name = kube, name
        self.values: list = []
        self._stop = threading.Event()
        self._rv = kube.calltype(name)["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            w = watch.Watch()
            for event in w.stream(
                self.kube.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                "calltypes",
                field_selector=f"metadata.name={self.name}",
                resource_version=self._rv,
                timeout_seconds=2,
            ):
                obj = event["object"]
                self._rv = obj["metadata"]["resourceVersion"]
                count = (obj.get("status") or {}).get("livestreams")
                if not self.values or self.values[-1] != count:
                    self.values.append(count)
                if self._stop.is_set():
                    break
            w.stop()

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(10)
        return self.values


def test_a_burst_of_livestreams_is_counted_exactly_with_few_status_patches(operator, kube, ct_name, namespace):
    """Creating 20 Livestreams of one CallType at once: ``status.livestreams`` ends exact, written by
    a few coalesced patches instead of one per Livestream; the same for deleting half of them."""
    from concurrent.futures import ThreadPoolExecutor

    n = 20
    kube.create_calltype(ct_name)
    wait_for(lambda: (kube.calltype(ct_name).get("status") or {}).get("livestreams") == 0, 15, what="count 0")
    counts = CountWatch(kube, ct_name)
    names = [f"burst-{i:02d}" for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: kube.create_livestream(namespace, name, {"callType": ct_name}), names))
    wait_for(lambda: (kube.calltype(ct_name).get("status") or {}).get("livestreams") == n, 60, what=f"count {n}")
    # Many streams at once, served oldest reconcile first by the client (onair.kube.OldestFirstGate): all get there.
    for name in names:
        kube.wait_reconciled(namespace, name, timeout=120)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: kube.delete_livestream(namespace, name), names[: n // 2]))
    wait_for(
        lambda: (kube.calltype(ct_name).get("status") or {}).get("livestreams") == n - n // 2,
        60,
        what=f"count {n - n // 2}",
    )
    values = counts.stop()
    assert values[-1] == n - n // 2 and n in values, values
    # Without coalescing every ADDED/DELETED event patched the status: ~n + n/2 changes.
    assert len(values) - 1 <= n // 2, f"{len(values) - 1} status patches for {n} creates and {n // 2} deletes: {values}"
