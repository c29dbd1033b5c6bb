"""The AgentClient against real agent HTTP servers on loopback (the shared Agent base, not a stand-in)."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from onair.agent.app import Agent
from onair.api.agent import Desired, IngestStatus
from onair.controller.agent_client import AgentClient
from tests.fixtures.media import free_port


class FakeIngest(Agent):
    """The real Agent HTTP surface with a fixed status: what the operator sees of an ingest."""

    def __init__(self, port: int, receiving: bool, token_file: str | None = None) -> None:
        super().__init__("ingest", "127.0.0.1", port, token_file)
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
    agent_client = AgentClient(lambda ns, ls, key: f"http://127.0.0.1:{port}" if key == "ingest" else None, timeout=1.0)
    try:
        desired = Desired(phase="live", broadcasting=True, recording=False, active=True, generation=4)
        reports = await agent_client.poll("ns", "show", ["ingest", "transcoder"], desired)
        ingest, transcoder = reports["ingest"], reports["transcoder"]
        assert ingest.reachable and ingest.desired_accepted
        assert isinstance(ingest.status, IngestStatus) and ingest.status.receiving is True
        assert agent.applied == [desired]
        assert not transcoder.reachable and transcoder.error == "no address"
    finally:
        await agent_client.close()
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
    agent_client = AgentClient(lambda ns, ls, key: urls.get(key), timeout=1.0)
    try:
        reports = await agent_client.poll("ns", "show", ["ingest", "origin"], Desired())
        assert not reports["ingest"].reachable and reports["ingest"].error
        assert not reports["origin"].reachable and "invalid /status payload" in reports["origin"].error
        ok, why = await agent_client.clear_dvr("ns", "show")
        assert not ok and "404" in why
    finally:
        await agent_client.close()
        await runner.cleanup()


TOKEN = "agent-token-0123456789abcdef"


async def _call(method: str, url: str, token: str | None = None) -> tuple[int, dict | str, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, headers=headers, json={"phase": "live"} if method == "PUT" else None) as r:
            body = await r.text()
            try:
                return r.status, await r.json(content_type=None), dict(r.headers)
            except ValueError:
                return r.status, body, dict(r.headers)


async def test_the_agent_api_wants_the_agent_token_except_for_kubelet_probes_and_metrics(tmp_path):
    token_file = tmp_path / "agentToken"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    agent = FakeIngest(port, receiving=True, token_file=str(token_file))
    await agent.start_http()
    base = f"http://127.0.0.1:{port}"
    try:
        for method, path in (("GET", "/status"), ("PUT", "/desired")):
            status, body, headers = await _call(method, base + path)
            assert status == 401 and "Bearer" in headers["WWW-Authenticate"] and "agent token" in body["error"]
            status, body, _ = await _call(method, base + path, "not-the-token")
            assert (status, body) == (403, {"error": "wrong agent token"})
            assert (await _call(method, base + path, TOKEN))[0] == 200
        assert agent.applied == [Desired(phase="live")]  # only the authorized PUT got through
        for path in ("/healthz", "/metrics"):
            status, body, _ = await _call("GET", base + path)
            assert status == 200 and TOKEN not in str(body)
        assert (await _call("GET", base + "/nothing-here"))[0] == 401  # unknown paths reveal nothing either

        # The kubelet swaps a rotated Secret file in place: the agent follows without a restart.
        token_file.write_text("rotated-token-0123456789")
        assert (await _call("GET", base + "/status", TOKEN))[0] == 403
        assert (await _call("GET", base + "/status", "rotated-token-0123456789"))[0] == 200
    finally:
        await agent.stop_http()


async def test_a_configured_but_missing_token_file_locks_the_api(tmp_path, caplog):
    port = free_port()
    agent = FakeIngest(port, receiving=True, token_file=str(tmp_path / "agentToken"))
    caplog.set_level(logging.INFO, "onair.agent")
    await agent.start_http()
    base = f"http://127.0.0.1:{port}"
    try:
        assert "LOCKED" in caplog.text and str(tmp_path / "agentToken") in caplog.text
        for token in (None, "", TOKEN):
            status, body, _ = await _call("PUT", base + "/desired", token)
            assert status == 503 and "locked" in body["error"]
        assert agent.applied == []
        assert (await _call("GET", base + "/healthz"))[0] == 200
        (tmp_path / "agentToken").write_text("")  # empty is no better
        assert (await _call("GET", base + "/status", TOKEN))[0] == 503
        (tmp_path / "agentToken").write_text(TOKEN)
        assert (await _call("GET", base + "/status", TOKEN))[0] == 200
    finally:
        await agent.stop_http()


async def test_an_agent_without_a_token_file_is_open_and_says_so(caplog):
    port = free_port()
    agent = FakeIngest(port, receiving=True)
    caplog.set_level(logging.INFO, "onair.agent")
    await agent.start_http()
    try:
        assert any(r.levelno == logging.WARNING and "OPEN" in r.getMessage() for r in caplog.records)
        assert (await _call("PUT", f"http://127.0.0.1:{port}/desired"))[0] == 200
    finally:
        await agent.stop_http()


async def test_the_agent_client_carries_the_token_and_reports_a_refusal(tmp_path):
    token_file = tmp_path / "agentToken"
    token_file.write_text(TOKEN)
    port = free_port()
    agent = FakeIngest(port, receiving=True, token_file=str(token_file))
    await agent.start_http()
    agent_client = AgentClient(lambda ns, ls, key: f"http://127.0.0.1:{port}", timeout=1.0)
    try:
        ok = await agent_client.poll_one("ns", "show", "ingest", Desired(phase="live"), token=TOKEN)
        assert ok.reachable and ok.desired_accepted and ok.refused is None and ok.status.receiving is True
        for token, refusal in (
            (None, "HTTP 401: the agent API requires Authorization: Bearer <agent token>"),
            ("stale-token-0123456789", "HTTP 403: wrong agent token"),
        ):
            report = await agent_client.poll_one("ns", "show", "ingest", Desired(phase="ended"), token=token)
            assert not report.reachable and not report.desired_accepted
            assert report.refused is not None and report.refused.startswith(refusal), report.refused
        assert [d.phase for d in agent.applied] == ["live"]
        done, why = await agent_client.clear_dvr("ns", "show", "ingest", token="stale-token-0123456789")
        assert not done and "HTTP 403: wrong agent token" in why
        token_file.unlink()
        locked = await agent_client.poll_one("ns", "show", "ingest", None, token=TOKEN)
        assert locked.refused is not None and locked.refused.startswith("HTTP 503: the agent API is locked")
    finally:
        await agent_client.close()
        await agent.stop_http()
