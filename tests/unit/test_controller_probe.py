"""The prober against real agent HTTP servers on loopback (the shared Agent base, not a stand-in)."""
from __future__ import annotations

from aiohttp import web

from onair.agent.app import Agent
from onair.api.agent import Desired, IngestStatus
from onair.controller.probe import Prober
from tests.fixtures.media import free_port


class FakeIngest(Agent):
    """The real Agent HTTP surface with a fixed status: what the operator sees of an ingest."""

    def __init__(self, port: int, receiving: bool) -> None:
        super().__init__("ingest", "127.0.0.1", port)
        self.receiving = receiving
        self.applied: list[Desired] = []

    def status(self) -> IngestStatus:
        return IngestStatus(slot="main", receiving=self.receiving)

    async def apply_desired(self, desired: Desired) -> None:
        self.applied.append(desired)


async def test_poll_puts_desired_and_reads_status():
    port = free_port()
    agent = FakeIngest(port, receiving=True)
    await agent.start_http()
    prober = Prober(lambda ns, ls, key: f"http://127.0.0.1:{port}" if key == "ingest" else None, timeout=1.0)
    try:
        desired = Desired(phase="live", broadcasting=True, recording=False, active=True, generation=4)
        reports = await prober.poll("ns", "show", ["ingest", "transcoder"], desired)
        ingest, transcoder = reports["ingest"], reports["transcoder"]
        assert ingest.reachable and ingest.desired_accepted
        assert isinstance(ingest.status, IngestStatus) and ingest.status.receiving is True
        assert agent.applied == [desired]
        assert not transcoder.reachable and transcoder.error == "no address"
    finally:
        await prober.close()
        await agent.stop_http()


async def test_dead_or_wrong_agents_are_unreachable_not_errors():
    dead = free_port()
    async def garbage_status(request: web.Request) -> web.Response:
        return web.json_response({"role": "ingest", "nonsense": True})

    async def accept(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/status", garbage_status)
    app.router.add_put("/desired", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    wrong = free_port()
    await web.TCPSite(runner, "127.0.0.1", wrong).start()
    urls = {"ingest": f"http://127.0.0.1:{dead}", "origin": f"http://127.0.0.1:{wrong}"}
    prober = Prober(lambda ns, ls, key: urls.get(key), timeout=1.0)
    try:
        reports = await prober.poll("ns", "show", ["ingest", "origin"], Desired())
        assert not reports["ingest"].reachable and reports["ingest"].error
        assert not reports["origin"].reachable and "invalid /status payload" in reports["origin"].error
        ok, why = await prober.clear_dvr("ns", "show")
        assert not ok and "404" in why
    finally:
        await prober.close()
        await runner.cleanup()
