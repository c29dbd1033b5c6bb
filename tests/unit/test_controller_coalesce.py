"""Coalescer: bursts of requests per key become one run that sees the latest state.

The window is driven by a gate the test opens (no wall clock involved)."""

from __future__ import annotations

import asyncio

from onair.controller.coalesce import Coalescer


class Gate:
    """An injected ``sleep``: every window waits until the test opens it."""

    def __init__(self) -> None:
        self.waiting = 0
        self._open = asyncio.Event()

    async def sleep(self, _seconds: float) -> None:
        self.waiting += 1
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1
        self._open.clear()

    def open(self) -> None:
        self._open.set()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_burst_becomes_one_run_with_the_final_value():
    async def main() -> None:
        value = {"count": 0}
        seen: list[tuple[str, int]] = []

        async def action(key: str) -> None:
            seen.append((key, value["count"]))

        gate = Gate()
        co = Coalescer(action, window=1.0, sleep=gate.sleep)
        for i in range(100):
            value["count"] = i + 1
            co.request("ct")
        await settle()
        assert seen == [] and gate.waiting == 1, "nothing runs before the window ends"
        gate.open()
        await settle()
        assert seen == [("ct", 100)]
        assert not co.busy("ct"), "no request since the run: nothing left scheduled"
        assert co.runs == 1

    asyncio.run(main())


def test_keys_are_independent():
    async def main() -> None:
        seen: list[str] = []

        async def action(key: str) -> None:
            seen.append(key)

        gate = Gate()
        co = Coalescer(action, window=1.0, sleep=gate.sleep)
        for _ in range(3):
            co.request("a")
            co.request("b")
        await settle()
        assert gate.waiting == 2
        gate.open()
        await settle()
        gate.open()
        await settle()
        assert sorted(seen) == ["a", "b"]

    asyncio.run(main())


def test_a_request_during_a_run_schedules_exactly_one_more():
    async def main() -> None:
        release = asyncio.Event()
        started = asyncio.Event()
        runs: list[int] = []

        async def action(key: str) -> None:
            runs.append(len(runs))
            started.set()
            await release.wait()

        gate = Gate()
        co = Coalescer(action, window=1.0, sleep=gate.sleep)
        co.request("ct")
        await settle()
        gate.open()
        await started.wait()
        for _ in range(10):
            co.request("ct")  # while the first run is in flight
        release.set()
        await settle()
        assert runs == [0] and gate.waiting == 1, "the next run waits for its own window"
        gate.open()
        await settle()
        assert runs == [0, 1]
        assert not co.busy("ct")

    asyncio.run(main())


def test_a_failing_run_does_not_stop_later_ones():
    async def main() -> None:
        calls: list[int] = []

        async def action(key: str) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("API server unavailable")

        gate = Gate()
        co = Coalescer(action, window=1.0, sleep=gate.sleep)
        co.request("ct")
        await settle()
        gate.open()
        await settle()
        assert calls == [1] and not co.busy("ct")
        co.request("ct")
        await settle()
        gate.open()
        await settle()
        assert calls == [1, 1]

    asyncio.run(main())


def test_close_cancels_scheduled_runs():
    async def main() -> None:
        seen: list[str] = []

        async def action(key: str) -> None:
            seen.append(key)

        gate = Gate()
        co = Coalescer(action, window=1.0, sleep=gate.sleep)
        co.request("ct")
        await settle()
        await co.close()
        gate.open()
        await settle()
        assert seen == [] and not co.busy("ct")

    asyncio.run(main())
