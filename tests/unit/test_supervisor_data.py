"""A child's media output through the supervisor: every byte arrives, in order, and with
``data_interval`` in fewer, bigger chunks (each chunk is a wake-up of the agent)."""

from __future__ import annotations

import asyncio
import sys

from onair.agent.supervisor import Child

# 100 writes of 1000 bytes, 5 ms apart, each flushed: what a reader flushing every frame does.
WRITER = "import os, sys, time\nfor i in range(100):\n    os.write(1, bytes([i]) * 1000)\n    time.sleep(0.005)\n"


async def _collect(interval: float) -> tuple[list[bytes], list[float]]:
    chunks: list[bytes] = []
    times: list[float] = []
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def took(chunk: bytes) -> None:
        chunks.append(chunk)
        times.append(loop.time())

    child = Child(
        name="writer",
        argv=[sys.executable, "-c", WRITER],
        restart=False,
        data_interval=interval,
        on_data=took,
        on_exit=lambda code: exited.set_result(code),
    )
    child.start()
    assert await asyncio.wait_for(exited, 30) == 0
    await child.stop()
    return chunks, times


def test_every_byte_arrives_in_order():
    chunks, _ = asyncio.run(_collect(0.0))
    assert b"".join(chunks) == b"".join(bytes([i]) * 1000 for i in range(100))


def test_data_interval_hands_over_fewer_bigger_chunks():
    eager, _ = asyncio.run(_collect(0.0))
    paced, times = asyncio.run(_collect(0.1))
    assert b"".join(paced) == b"".join(bytes([i]) * 1000 for i in range(100))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.099, f"chunks handed over less than data_interval apart: {gaps}"
    assert len(paced) < len(eager)
