"""The operator with several origin replicas: every replica gets the same Desired (all must make the
same segments public) and the DVR clear; the status counts the replicas that answer, and a replica
down is a Warning Event, not a failure of the stream."""

from __future__ import annotations

from aiohttp import web

from onair.agent.app import Agent
from onair.api.agent import Desired, OriginStatus
from onair.api.conditions import ORIGIN_REPLICAS_DOWN, ORIGIN_REPLICAS_RECOVERED
from onair.controller.agent_client import AgentClient
from onair.controller.events import transition_events
from onair.render.conditions import find_condition
from tests.fixtures.media import free_port
from tests.unit.test_render_status import healthy, status


class FakeOrigin(Agent):
    """The real agent HTTP surface of one origin replica."""

    def __init__(self, port: int) -> None:
        super().__init__("origin", "127.0.0.1", port, None)
        self.applied: list[Desired] = []
        self.cleared = 0
        self.app.add_routes([web.post("/dvr/clear", self._clear)])

    async def _clear(self, request: web.Request) -> web.Response:
        self.cleared += 1
        return web.json_response({"cleared": True})

    def status(self) -> OriginStatus:
        return OriginStatus(dvr_window_seconds=3600)

    async def apply_desired(self, desired: Desired) -> None:
        self.applied.append(desired)


async def test_every_replica_gets_desired_and_the_clear_and_the_poll_counts_those_answering():
    ports = [free_port() for _ in range(3)]
    replicas = [FakeOrigin(p) for p in ports[:2]]  # the third is down
    for r in replicas:
        await r.start_http()
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    client = AgentClient(
        lambda ns, ls, key: urls[0], timeout=1.0, replicas=lambda ns, ls, key: urls if key == "origin" else []
    )
    try:
        desired = Desired(phase="live", broadcasting=True, generation=2)
        report = (await client.poll("ns", "show", ["origin"], desired))["origin"]
        assert report.reachable and isinstance(report.status, OriginStatus)
        assert (report.replicas, report.replicas_reachable) == (3, 2)
        assert len(report.replica_errors) == 1 and urls[2] in report.replica_errors[0]
        assert [r.applied for r in replicas] == [[desired], [desired]]
        ok, why = await client.clear_dvr("ns", "show")
        assert not ok and urls[2] in why  # the dead one: the clear is tried again
        assert [r.cleared for r in replicas] == [1, 1]
    finally:
        await client.close()
        for r in replicas:
            await r.stop_http()


def test_status_shows_replicas_answering_and_stays_ready_with_one_down():
    settings = {"origin": {"replicas": 3}}
    out = status({"phase": "live"}, settings=settings, agents=healthy(), origin_replicas_reachable=2)
    assert out["originReplicas"] == "2/3"
    assert find_condition(out["conditions"], "Ready")["status"] == "True"
    gone = {k: v for k, v in healthy().items() if k != "origin"}
    assert status({"phase": "live"}, settings=settings, agents=gone)["originReplicas"] == "0/3"
    assert "originReplicas" not in status({"phase": "live"}, agents=healthy())


def test_a_replica_down_and_back_are_events():
    def reasons(old, new):
        return [e.reason for e in transition_events({"originReplicas": old}, {"originReplicas": new})]

    assert reasons("3/3", "2/3") == [ORIGIN_REPLICAS_DOWN]
    assert reasons("2/3", "1/3") == [ORIGIN_REPLICAS_DOWN]
    assert reasons("1/3", "2/3") == []
    assert reasons("2/3", "3/3") == [ORIGIN_REPLICAS_RECOVERED]
    assert reasons(None, "3/3") == []
    assert reasons(None, "0/3") == [ORIGIN_REPLICAS_DOWN]
