"""onair.kube without a cluster: the kinds' REST mapping, errors, and the oldest-first gate."""

from __future__ import annotations

import asyncio

import pytest

from onair import kube
from onair.kube import KubeError, OldestFirstGate, request_order


def test_every_kind_maps_to_its_rest_collection():
    secret = kube.KINDS[("v1", "Secret")].resource._api_info
    assert (secret.resource.group, secret.resource.version, secret.plural) == ("", "v1", "secrets")
    deployment = kube.KINDS[("apps/v1", "Deployment")].resource._api_info
    assert (deployment.resource.group, deployment.resource.version, deployment.plural) == ("apps", "v1", "deployments")
    status = kube.LIVESTREAM.resource.Status._api_info
    assert (status.resource.group, status.plural, status.action) == ("onair.dev", "livestreams", "status")
    assert not issubclass(kube.CALLTYPE.resource, kube.GenericNamespacedResource)
    assert issubclass(kube.LIVESTREAM.resource, kube.GenericNamespacedResource)


def test_objects_of_our_kinds_stay_plain_dicts():
    """Rendered manifests go out and come back without a model round trip."""
    obj = kube.KINDS[("v1", "ConfigMap")].resource({"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert isinstance(obj, dict) and obj["data"] == {"k": "v"}


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="no REST mapping for Job batch/v1"):
        kube.kind_of({"apiVersion": "batch/v1", "kind": "Job"})


def test_transient_errors():
    assert KubeError(0, "ConnectionError", "x").transient
    assert KubeError(503, "ServiceUnavailable", "x").transient
    assert KubeError(409, "Conflict", "x").transient
    assert not KubeError(422, "Invalid", "x").transient
    assert not KubeError(403, "Forbidden", "x").transient


def test_a_missing_kubeconfig_is_a_config_error(tmp_path):
    with pytest.raises((kube.ConfigError, OSError)):
        kube.load_config(str(tmp_path / "absent"))


async def _queue_behind_a_held_slot(gate: OldestFirstGate, requests: list[tuple[int, str]]) -> list[str]:
    ran: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with gate:
            await release.wait()

    async def request(order: int, label: str) -> None:
        request_order.set(order)
        async with gate:
            ran.append(label)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(request(order, label)) for order, label in requests]
    for _ in range(5):
        await asyncio.sleep(0)
    assert ran == []  # all wait behind the held slot
    release.set()
    await asyncio.gather(holder, *tasks)
    return ran


async def test_lowest_order_first_and_fifo_within_an_order():
    ran = await _queue_behind_a_held_slot(
        OldestFirstGate(1), [(5, "five"), (3, "three-a"), (9, "nine"), (3, "three-b"), (0, "outside")]
    )
    assert ran == ["outside", "three-a", "three-b", "five", "nine"]


async def test_the_order_follows_a_reconcile_into_the_tasks_it_gathers():
    gate = OldestFirstGate(1)
    ran: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with gate:
            await release.wait()

    async def call(label: str) -> None:
        async with gate:
            ran.append(label)

    async def reconcile(order: int, label: str) -> None:
        request_order.set(order)
        await asyncio.gather(*(call(f"{label}{i}") for i in range(2)))

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(reconcile(order, label)) for order, label in ((2, "late"), (1, "early"))]
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(holder, *tasks)
    assert ran == ["early0", "early1", "late0", "late1"]


async def test_a_cancelled_waiter_gives_its_turn_to_the_next():
    gate = OldestFirstGate(1)
    release = asyncio.Event()
    ran: list[str] = []

    async def hold() -> None:
        async with gate:
            await release.wait()

    async def request(label: str) -> None:
        async with gate:
            ran.append(label)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    cancelled, kept = asyncio.create_task(request("cancelled")), asyncio.create_task(request("kept"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(holder, kept)
    assert ran == ["kept"] and cancelled.cancelled()
    async with gate:  # the slot came back
        pass


def test_every_namespace_is_asked_for_only_of_a_namespaced_kind():
    assert kube._scope(kube.LIVESTREAM, None) == kube.ALL_NS
    assert kube._scope(kube.LIVESTREAM, "media") == "media"
    assert kube._scope(kube.CALLTYPE, None) is None


def test_kinds_outside_onairs_table_come_from_kubernetes_or_their_crd():
    assert kube.builtin_kind("rbac.authorization.k8s.io/v1", "ClusterRole") == kube.Kind(
        "rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False
    )
    assert kube.builtin_kind("onair.dev/v1alpha1", "CallType") is None
    crd = {
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": True}, {"name": "v0", "served": False}],
        }
    }
    assert kube.kinds_of_crd(crd) == [kube.Kind("example.com/v1", "Widget", "widgets", namespaced=True)]
