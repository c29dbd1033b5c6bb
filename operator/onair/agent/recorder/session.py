"""One recording session and the timing rules around it (pure: the clock is passed in).

A session starts with the first media and lasts across stream drops shorter than
``finalize_after_seconds``; each resumption writes new parts under the same prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class Session:
    prefix: str
    started_at: datetime
    # Monotonic time of the last media seen; the finalize window runs from here.
    last_media_at: float
    # Seconds recorded by runs that have ended; the running one adds its own progress.
    recorded_seconds: float = 0.0

    def finalize_due(self, now: float, finalize_after_seconds: float) -> bool:
        return now - self.last_media_at >= finalize_after_seconds

    def seconds_until_due(self, now: float, finalize_after_seconds: float) -> float:
        return max(0.0, self.last_media_at + finalize_after_seconds - now)


class Backoff:
    """Retry delays that double up to a ceiling and start over once the source is back."""

    def __init__(self, initial: float, maximum: float) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial
