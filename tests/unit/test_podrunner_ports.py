"""The pod runner's port table (``localcluster.podrunner.ports``): stable local ports, Service
ports resolved through selectors, and the port reserved for a Service that does not exist yet,
then handed to the pod that comes to back it. Inputs are the real render, as in
``test_podrunner_rewrite``; ports are really free ones (bound and released)."""

from __future__ import annotations

import json

import pytest

from onair.localcluster.podrunner.oneshot import wants_a_run
from onair.localcluster.podrunner.pods import Pending
from onair.localcluster.podrunner.ports import PortTable
from tests.unit.test_podrunner_rewrite import LS, NS, config, plans, rendered, services  # noqa: F401

BACKUP_SERVICE = f"{LS}-ingest-backup"


def _plan(rendered, key: str):  # noqa: F811 - the imported fixture
    return next(p for p in plans(rendered) if p.name == f"{LS}-{key}")


def _allocated(rendered, skip: tuple[str, ...] = ()) -> PortTable:  # noqa: F811
    table = PortTable()
    for plan in plans(rendered):
        if plan.name not in skip:
            table.allocate(plan, [(p.number, p.protocol) for p in plan.ports])
    return table


def test_ports_are_stable_and_distinct(rendered):  # noqa: F811
    table = _allocated(rendered)
    origin = _plan(rendered, "origin")
    before = table.by_number(origin)
    table.allocate(origin, [(p.number, p.protocol) for p in origin.ports])
    assert table.by_number(origin) == before
    every = [local for plan in plans(rendered) for local in table.by_number(plan).values()]
    assert len(every) == len(set(every))
    assert table.by_name(origin)["agent"] == table.local(origin, origin.port_number("agent") or 0)


def test_a_config_is_rewritten_with_the_service_table(rendered):  # noqa: F811
    table = _allocated(rendered)
    ps = plans(rendered)
    table.update_services(services(rendered), ps, ready=[])
    transcoder = _plan(rendered, "transcoder")
    text = json.dumps(config(rendered, "transcoder"))
    out = json.loads(table.rewrite(transcoder, text, {}))
    upload = table.local(_plan(rendered, "origin"), 8082)
    assert out["outputUrl"] == f"http://127.0.0.1:{upload}/upload"
    # Only ready pods are endpoints users are shown.
    assert table.ready_services() == {}
    # A file that is no role config is written as it is.
    assert table.rewrite(transcoder, "not json", {}) == b"not json"


def test_a_service_that_exists_without_a_pod_is_waited_for(rendered):  # noqa: F811
    table = _allocated(rendered)
    without_origin = [p for p in plans(rendered) if p.name != f"{LS}-origin"]
    table.update_services(services(rendered), without_origin, ready=[])
    with pytest.raises(Pending, match=f"{LS}-origin"):
        table.rewrite(_plan(rendered, "transcoder"), json.dumps(config(rendered, "transcoder")), {})


def test_an_absent_service_gets_a_reserved_port_its_pod_later_takes(rendered):  # noqa: F811
    table = _allocated(rendered, skip=(BACKUP_SERVICE,))
    absent = [s for s in services(rendered) if s["metadata"]["name"] != BACKUP_SERVICE]
    wanted = [p for p in plans(rendered) if p.name != BACKUP_SERVICE]
    table.update_services(absent, wanted, ready=[])
    transcoder = _plan(rendered, "transcoder")
    out = json.loads(table.rewrite(transcoder, json.dumps(config(rendered, "transcoder")), {}))
    reserved = int(out["backupUrl"].split(":")[2].split("/")[0])

    # The Service and its pod appear: the pod gets the reserved port, nobody has to restart.
    assert table.claim_reservations(services(rendered), plans(rendered)) == set()
    backup = _plan(rendered, "ingest-backup")
    table.allocate(backup, [(p.number, p.protocol) for p in backup.ports])
    assert table.local(backup, 1935) == reserved


def test_a_reserved_port_claimed_by_a_pod_that_has_another_restarts_its_readers(rendered):  # noqa: F811
    table = _allocated(rendered, skip=(BACKUP_SERVICE,))
    absent = [s for s in services(rendered) if s["metadata"]["name"] != BACKUP_SERVICE]
    table.update_services(absent, [p for p in plans(rendered) if p.name != BACKUP_SERVICE], ready=[])
    transcoder = _plan(rendered, "transcoder")
    table.rewrite(transcoder, json.dumps(config(rendered, "transcoder")), {})
    backup = _plan(rendered, "ingest-backup")
    table.allocate(backup, [(p.number, p.protocol) for p in backup.ports])  # planned before its Service
    assert table.claim_reservations(services(rendered), plans(rendered)) == {(NS, transcoder.name)}


def _pod(**overrides) -> dict:
    pod = {
        "metadata": {"name": "delete-rec", "namespace": NS, "uid": "u"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]},
        "status": {"phase": "Pending"},
    }
    for path, value in overrides.items():
        section, field = path.split("__")
        pod[section][field] = value
    return pod


def test_only_bare_unfinished_run_once_pods_are_run():
    assert wants_a_run(_pod())
    assert not wants_a_run(_pod(spec__restartPolicy="Always"))
    assert not wants_a_run(_pod(status__phase="Succeeded"))
    assert not wants_a_run(_pod(status__phase="Failed"))
    assert not wants_a_run(_pod(metadata__deletionTimestamp="2026-01-01T00:00:00Z"))
    assert not wants_a_run(_pod(metadata__ownerReferences=[{"kind": "ReplicaSet", "name": "x"}]))
