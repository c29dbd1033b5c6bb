"""The one agent lifecycle (``Agent.run``), on the real Agent HTTP surface and a real SIGTERM:
prepare before anything listens, drain while /status still answers, stop once nothing can call in,
and a failed start still stopped (without a drain, since nothing ran)."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest

from onair.agent.app import Agent
from onair.api.agent import IngestStatus
from tests.fixtures.media import free_port


async def _status_code(port: int) -> int | str:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            async with http.get(f"http://127.0.0.1:{port}/status") as response:
                return response.status
    except aiohttp.ClientConnectionError as exc:
        return type(exc).__name__


class Recorded(Agent):
    """An agent whose hooks write down what happened and whether its API answered then."""

    def __init__(self, port: int, fail_start: bool = False) -> None:
        super().__init__("ingest", "127.0.0.1", port)
        self.fail_start = fail_start
        self.events: list[tuple[str, int | str]] = []

    def status(self) -> IngestStatus:
        return IngestStatus(slot="main", receiving=False)

    async def prepare(self) -> None:
        self.events.append(("prepare", await _status_code(self.port)))

    async def start(self) -> None:
        self.events.append(("start", await _status_code(self.port)))
        if self.fail_start:
            raise RuntimeError("the role could not start")
        # The pod is told to go away once the role runs.
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)

    async def drain(self) -> None:
        self.events.append(("drain", await _status_code(self.port)))

    async def stop(self) -> None:
        self.events.append(("stop", await _status_code(self.port)))


async def test_sigterm_drains_while_the_agent_api_answers_then_stops_after_it_closed():
    agent = Recorded(free_port())
    await asyncio.wait_for(agent.run(), 10)
    refused = "ClientConnectorError"
    assert agent.events == [("prepare", refused), ("start", 200), ("drain", 200), ("stop", refused)]


async def test_a_failed_start_is_stopped_without_a_drain():
    agent = Recorded(free_port(), fail_start=True)
    with pytest.raises(RuntimeError, match="could not start"):
        await asyncio.wait_for(agent.run(), 10)
    assert [name for name, _ in agent.events] == ["prepare", "start", "stop"]
    assert agent.events[-1][1] == "ClientConnectorError", "the agent API is closed once the role is stopped"
