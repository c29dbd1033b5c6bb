"""Coalesce bursts of "this key changed" into one run of an async action per key and window.

Used for CallType ``status.livestreams``: creating 1000 Livestreams of one CallType used to patch
that CallType's status ~1000 times (one per ADDED event, each through the API server). The
count is read when the action runs, so one run after the burst settles writes the exact final
value, and at most one run per key is ever in flight (no two patches of one object race).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Generic, Hashable, Optional, TypeVar

log = logging.getLogger("onair.controller")
K = TypeVar("K", bound=Hashable)


class Coalescer(Generic[K]):
    """``request(key)`` schedules ``action(key)`` ``window`` seconds later; requests for the same
    key before it starts are absorbed; a request while it runs schedules exactly one more run."""

    def __init__(
        self,
        action: Callable[[K], Awaitable[None]],
        window: float = 1.0,
        sleep: Optional[Callable[[float], Awaitable[None]]] = None,
        what: str = "coalesced action",
    ) -> None:
        self.action = action
        self.window = window
        # Injectable so tests can drive the window deterministically.
        self._sleep = sleep or asyncio.sleep
        self.what = what
        self._pending: set[K] = set()
        self._tasks: dict[K, asyncio.Task] = {}
        self.runs = 0

    def request(self, key: K) -> None:
        self._pending.add(key)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._run(key))

    def busy(self, key: K) -> bool:
        return key in self._tasks

    async def _run(self, key: K) -> None:
        try:
            while key in self._pending:
                await self._sleep(self.window)
                self._pending.discard(key)
                self.runs += 1
                try:
                    await self.action(key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failed run must not stop later ones
                    log.warning("%s for %s failed: %s", self.what, key, exc)
        finally:
            self._tasks.pop(key, None)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()
