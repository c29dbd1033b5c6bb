"""Ingest refusals -> rate-limited Warning Events on the Livestream.

Each ingest agent reports its refusals as counters per (reason, protocol) with the time of the
last one (``IngestStatus.refusals``); new ones are the difference between two polls. An encoder
retrying a wrong key every two seconds must not bury the Livestream in Events: per refusal reason
at most one Event per ``interval``, the refusals in between summed into the next one.

Memory only. After an operator restart the first poll announces what an agent refused within the
last ``interval`` (older refusals were announced by the previous operator, or are stale news);
an agent restart (its counts start over) is recognised by an entry's changed ``firstAt`` or a
count that went down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Optional

from onair.api.agent import IngestRefusal, IngestStatus
from onair.render import refusals as rrefusals

from . import events

DEFAULT_INTERVAL_SECONDS = 60.0


@dataclass
class _Pending:
    count: int = 0
    since: Optional[datetime] = None
    protocols: list[str] = field(default_factory=list)
    slots: list[str] = field(default_factory=list)
    last: Optional[IngestRefusal] = None
    last_slot: str = "main"

    def add(self, slot: str, entry: IngestRefusal, new: int, since: datetime) -> None:
        self.count += new
        self.since = since if self.since is None else min(self.since, since)
        if entry.protocol and entry.protocol not in self.protocols:
            self.protocols.append(entry.protocol)
        if slot not in self.slots:
            self.slots.append(slot)
        if self.last is None or entry.last_at >= self.last.last_at:
            self.last, self.last_slot = entry, slot


class RefusalAnnouncer:
    """Per Livestream: which refusals were seen, which wait for their Event, when the last went out."""

    def __init__(self, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._seen: dict[tuple[str, str, Optional[str]], IngestRefusal] = {}
        self._pending: dict[str, _Pending] = {}
        self._announced_at: dict[str, datetime] = {}

    def observe(self, slot: str, entries: Iterable[IngestRefusal], now: datetime) -> None:
        for entry in entries:
            key = (slot, entry.reason, entry.protocol)
            before = self._seen.get(key)
            self._seen[key] = entry
            if before is None:
                fresh = (now - entry.last_at).total_seconds() <= self.interval
                new, since = (entry.count, entry.first_at) if fresh else (0, entry.first_at)
            elif entry.first_at != before.first_at or entry.count < before.count:
                new, since = entry.count, entry.first_at  # a restarted agent counts from zero
            else:
                new, since = entry.count - before.count, before.last_at
            if new > 0:
                self._pending.setdefault(entry.reason, _Pending()).add(slot, entry, new, since)

    def due(self, now: datetime) -> list[rrefusals.RefusalBatch]:
        """Batches whose Event may go out now (each reason at most once per ``interval``)."""
        out = []
        for reason, pending in list(self._pending.items()):
            last = self._announced_at.get(reason)
            if last is not None and (now - last).total_seconds() < self.interval:
                continue
            assert pending.last is not None and pending.since is not None
            out.append(
                rrefusals.RefusalBatch(
                    reason=reason,
                    count=pending.count,
                    since=pending.since,
                    protocols=tuple(pending.protocols),
                    slots=tuple(pending.slots),
                    last_protocol=pending.last.protocol,
                    last_slot=pending.last_slot,
                    last_at=pending.last.last_at,
                    last_address=pending.last.last_address,
                    last_message=pending.last.message,
                )
            )
            del self._pending[reason]
            self._announced_at[reason] = now
        return out


def announce(
    announcer: RefusalAnnouncer,
    body: Mapping[str, Any],
    agents: Mapping[str, Any],
    namespace: str,
    livestream: str,
    secret: str,
    now: datetime,
) -> None:
    """Feed every reachable ingest's refusals in and post the Events that are due.
    ``agents``: role key -> the agent's status model (None when unreachable)."""
    for status in agents.values():
        if isinstance(status, IngestStatus) and status.refusals:
            announcer.observe(status.slot, status.refusals, now)
    for batch in announcer.due(now):
        reason, message = rrefusals.event(batch, namespace, livestream, secret)
        events.warn(body, reason, message)
