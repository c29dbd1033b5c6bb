"""Which source feeds the encoder: main, its warm backup, or the pull URI of the moment.

Rules (pure, clock passed in):

* a source is *healthy* when its reader delivered a keyframe since it (re)started and bytes
  within the last ``freeze_seconds``: a killed publisher (reader EOF) and a frozen one (no
  bytes) look the same after at most that long;
* when the active source is not healthy, switch at once to the first healthy source in
  priority order (main, backup), starting from its cached keyframe;
* a higher-priority source that is healthy again takes over only after it has stayed healthy
  for ``return_seconds`` (hysteresis: a flapping main must not bounce viewers back and forth),
  and then at its next keyframe, which keeps the output in step with the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

FREEZE_SECONDS = 1.0
RETURN_SECONDS = 3.0


@dataclass
class Health:
    ready: bool = False
    last_data: Optional[float] = None
    healthy_since: Optional[float] = None


@dataclass(frozen=True)
class Decision:
    target: Optional[str]
    immediate: bool = True  # False: wait for the target's next keyframe


@dataclass
class SourceSelector:
    priority: Sequence[str]
    freeze_seconds: float = FREEZE_SECONDS
    return_seconds: float = RETURN_SECONDS
    health: dict[str, Health] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.priority:
            self.health.setdefault(name, Health())

    def restarted(self, name: str) -> None:
        """A new reader process: nothing it said before counts."""
        self.health[name] = Health()

    def data(self, name: str, now: float, ready: bool) -> None:
        h = self.health[name]
        was_healthy = self.healthy(name, now)
        h.last_data = now
        h.ready = ready
        if ready and not was_healthy:
            h.healthy_since = now

    def healthy(self, name: Optional[str], now: float) -> bool:
        if name is None or name not in self.health:
            return False
        h = self.health[name]
        return h.ready and h.last_data is not None and now - h.last_data <= self.freeze_seconds

    def stable(self, name: str, now: float) -> bool:
        h = self.health[name]
        return self.healthy(name, now) and h.healthy_since is not None and now - h.healthy_since >= self.return_seconds

    def next_change(self, now: float) -> Optional[float]:
        """The earliest time after ``now`` at which ``decide`` could answer differently without
        new data: a healthy source going silent, or a recovered one becoming stable."""
        times = []
        for name in self.priority:
            h = self.health[name]
            if not self.healthy(name, now):
                continue
            assert h.last_data is not None
            times.append(h.last_data + self.freeze_seconds + 1e-3)
            if h.healthy_since is not None and now - h.healthy_since < self.return_seconds:
                times.append(h.healthy_since + self.return_seconds)
        return min(times) if times else None

    def decide(self, active: Optional[str], now: float, hysteresis: bool = True) -> Decision:
        """``hysteresis=False`` when nobody watches (no encoder): the best source wins at once."""
        if self.healthy(active, now):
            assert active is not None
            rank = self.priority.index(active)
            for name in self.priority[:rank]:
                if self.stable(name, now) or (not hysteresis and self.healthy(name, now)):
                    return Decision(name, immediate=not hysteresis)
            return Decision(active)
        for name in self.priority:
            if self.healthy(name, now):
                return Decision(name, immediate=True)
        return Decision(None)


@dataclass
class PullRotation:
    """Pull mode: one URI at a time, the next one (round-robin) whenever the current one fails."""

    uris: Sequence[str]
    index: int = 0
    failures: int = 0

    @property
    def current(self) -> str:
        return self.uris[self.index % len(self.uris)]

    def failed(self) -> str:
        self.failures += 1
        self.index = (self.index + 1) % len(self.uris)
        return self.current
