"""OldestFirstExecutor: the client pool serves the oldest reconcile's calls first."""
from __future__ import annotations

import asyncio
import threading

import pytest

from onair.controller.workpool import OldestFirstExecutor, request_order


def _blocked_pool():
    """A one-thread pool whose thread is held until the returned event is set."""
    pool = OldestFirstExecutor(max_workers=1, thread_name_prefix="test")
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    pool.submit(hold)
    assert started.wait(10)
    return pool, release


def _submit_as(pool: OldestFirstExecutor, order: int, fn, *args):
    token = request_order.set(order)
    try:
        return pool.submit(fn, *args)
    finally:
        request_order.reset(token)


def test_lowest_order_first_and_fifo_within_an_order():
    pool, release = _blocked_pool()
    ran: list[str] = []
    futures = [_submit_as(pool, order, ran.append, label)
               for order, label in ((5, "five"), (3, "three-a"), (9, "nine"), (3, "three-b"), (0, "outside"))]
    release.set()
    for f in futures:
        f.result(10)
    assert ran == ["outside", "three-a", "three-b", "five", "nine"]
    pool.shutdown()


def test_results_exceptions_and_cancellation_reach_the_caller():
    pool, release = _blocked_pool()
    ok = pool.submit(lambda x: x * 2, 21)
    bad = pool.submit(lambda: 1 / 0)
    ran: list[int] = []
    dropped = pool.submit(ran.append, 1)
    assert dropped.cancel()
    release.set()
    assert ok.result(10) == 42
    with pytest.raises(ZeroDivisionError):
        bad.result(10)
    pool.shutdown()
    assert ran == [] and dropped.cancelled()


def test_shutdown_runs_what_is_queued_unless_cancelled_and_refuses_more():
    pool, release = _blocked_pool()
    ran: list[int] = []
    kept = pool.submit(ran.append, 1)
    release.set()
    pool.shutdown(wait=True)
    assert kept.done() and ran == [1]
    with pytest.raises(RuntimeError):
        pool.submit(ran.append, 2)

    pool, release = _blocked_pool()
    queued = pool.submit(ran.append, 3)
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert queued.cancelled() and ran == [1]


def test_the_order_is_taken_from_the_submitting_task():
    """run_in_executor submits from the awaiting task, so a reconcile's number follows its calls,
    including those of tasks it gathers."""
    async def main() -> list[str]:
        pool, release = _blocked_pool()
        loop = asyncio.get_running_loop()
        ran: list[str] = []

        async def reconcile(order: int, label: str) -> None:
            request_order.set(order)
            await asyncio.gather(*(loop.run_in_executor(pool, ran.append, f"{label}{i}") for i in range(2)))

        tasks = [asyncio.create_task(reconcile(order, label)) for order, label in ((2, "late"), (1, "early"))]
        for _ in range(10):  # both reconciles queue their calls behind the held thread
            await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*tasks)
        pool.shutdown()
        return ran

    assert asyncio.run(main()) == ["early0", "early1", "late0", "late1"]
