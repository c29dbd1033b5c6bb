"""A thread pool that serves the oldest reconcile first.

The operator's blocking Kubernetes calls share one small pool. With a plain FIFO pool, a burst
of N new Livestreams interleaves everyone's requests: stream 1's Deployments wait behind the
Secrets and ConfigMaps of streams 2..N, so every stream finishes near the end of the burst.
Here each call carries the order number of the reconcile that made it (``request_order``, set
by the reconcile), and an idle thread takes the lowest number first: streams finish one after
another while the pool stays saturated. Calls made outside a reconcile (order 0) go first.
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import itertools
import queue
import threading
from typing import Any, Callable

# Set by whoever starts a unit of work (see livestream.reconcile_now); read at submit time.
request_order: contextvars.ContextVar[int] = contextvars.ContextVar("onair_request_order", default=0)

_STOP = float("inf")


class OldestFirstExecutor(concurrent.futures.Executor):
    def __init__(self, max_workers: int, thread_name_prefix: str = "worker") -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._tiebreak = itertools.count()  # FIFO among calls of one order number
        self._shutdown = False
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"{thread_name_prefix}_{i}", daemon=True)
                         for i in range(max_workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._queue.put((request_order.get(), next(self._tiebreak), future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            order, _, future, fn, args, kwargs = self._queue.get()
            if order == _STOP:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    item[2].cancel()
            for _ in self._threads:
                # Behind everything still queued: queued calls run before the threads stop.
                self._queue.put((_STOP, next(self._tiebreak), None, None, (), {}))
        if wait:
            for thread in self._threads:
                thread.join()
