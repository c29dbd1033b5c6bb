"""The ingest's memory of refused publishes, for ``/status``: one entry per (reason, protocol)
with a count, so an encoder retrying a wrong key every two seconds for a day stays one entry.

The operator compares successive snapshots (count and ``lastAt`` of each entry) to find new
refusals; entries are never reset while the agent runs, so nothing in between two polls is lost.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

from onair.api.agent import IngestRefusal

MAX_KINDS = 16  # (reason, protocol) pairs kept; there are fewer than that in practice


@dataclass
class _Entry:
    reason: str
    protocol: Optional[str]
    count: int
    first_at: dt.datetime
    last_at: dt.datetime
    last_address: Optional[str]
    message: str


class RefusalLog:
    def __init__(self, limit: int = MAX_KINDS) -> None:
        self.limit = limit
        self._entries: dict[tuple[str, Optional[str]], _Entry] = {}

    def record(
        self,
        reason: str,
        protocol: Optional[str],
        address: Optional[str],
        message: str,
        now: Optional[dt.datetime] = None,
    ) -> None:
        now = now or dt.datetime.now(dt.timezone.utc)
        key = (reason, protocol)
        entry = self._entries.pop(key, None)  # re-inserted last: dict order is recency
        if entry is None:
            entry = _Entry(reason, protocol, 0, now, now, None, message)
        entry.count += 1
        entry.last_at, entry.last_address, entry.message = now, address or None, message
        self._entries[key] = entry
        while len(self._entries) > self.limit:
            del self._entries[next(iter(self._entries))]

    def snapshot(self) -> list[IngestRefusal]:
        """Most recent first."""
        return [
            IngestRefusal(
                reason=e.reason,
                protocol=e.protocol,
                count=e.count,
                first_at=e.first_at,
                last_at=e.last_at,
                last_address=e.last_address,
                message=e.message,
            )
            for e in reversed(self._entries.values())
        ]
