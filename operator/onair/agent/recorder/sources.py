"""Which source the recorder reads: ``sourceUrl``, then the fallbacks (the backup ingest) in turn.

Sticky: the source in use stays in use for as long as it delivers, even after an earlier one
is back. Both encoders send the same show, so switching back would gain nothing and cost a cut
(a new part, and a second or two of media while the other source is connected). Only a source
that drops, or gives nothing, hands over to the next one, round-robin; a new session starts
from ``sourceUrl`` again.

While a session waits for its stream to come back, the finalize window must leave room to try
every source: an attempt that gets no media is given up after ``SOURCE_SLICE_SECONDS`` instead
of the usual first-media timeout (an ingest accepts a play of a stream nobody publishes and
sends nothing, so a dead source does not fail, it stays silent). A slice covers ffmpeg's probe
and its first progress report with room to spare; a source slower than that is still recorded
once the session is over and the recorder waits with full timeouts again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .command import PROBE_SECONDS, PROGRESS_PERIOD_SECONDS

SOURCE_SLICE_SECONDS = PROBE_SECONDS + PROGRESS_PERIOD_SECONDS + 2.0


@dataclass
class SourceRotation:
    urls: Sequence[str]
    index: int = 0

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("a recorder needs at least one source")

    @property
    def current(self) -> str:
        return self.urls[self.index]

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    def advance(self) -> str:
        """The source in use dropped or gave nothing: the next one."""
        self.index = (self.index + 1) % len(self.urls)
        return self.current

    def reset(self) -> None:
        self.index = 0

    def use(self, urls: Sequence[str]) -> bool:
        """The sources changed (the backup ingest came or went); True when they did. The source
        in use stays current if it is still listed; otherwise the next attempt is from the first."""
        if not urls:
            raise ValueError("a recorder needs at least one source")
        if list(urls) == list(self.urls):
            return False
        current = self.current
        self.urls = list(urls)
        self.index = self.urls.index(current) if current in self.urls else 0
        return True

    def attempt_timeout(self, first_media_timeout: float, reconnecting: bool) -> float:
        """How long an attempt may go without media before the next source is tried."""
        if self.several and reconnecting:
            return min(first_media_timeout, SOURCE_SLICE_SECONDS)
        return first_media_timeout
