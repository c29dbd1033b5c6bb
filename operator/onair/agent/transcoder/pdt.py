"""Program-date-time: the wall-clock time the first frame of a segment was received.

hls.js and Safari seek the DVR window by date and steer live latency with
``EXT-X-PROGRAM-DATE-TIME``, so it must say when the picture was captured, not when the segment
reached the packager (that is the encoder's buffering and a whole segment later: 1-2 s).

Where the time is taken: the relay, when a reader's bytes arrive (``Relay._reader_data``). The
reader is ``ffmpeg -c copy`` of the ingest's stream with ``-flush_packets 1``, on loopback or the
pod network, so a frame reaches the relay a few milliseconds after the ingest received it from the
user's encoder; what the relay adds is its reading in chunks (``READ_INTERVAL_SECONDS``) and
scheduling, both only ever *late*. So the time of a frame is estimated, not read off one chunk:
``ArrivalMap`` keeps, per half second of media time, the smallest ``arrival - decode time`` of the
frames in it, and a frame's arrival is its decode time plus the smallest such offset within
``WINDOW_SECONDS`` of it (the lower envelope: the frames that waited least). Frames of a live source
come in real time, so that envelope is the path from the ingest, within a frame of it.

The times are on the splicer's output timeline (what the encoder reads); the splicer reports each
video frame's output and source timestamps, and a frame replayed from the cache at a failover keeps
the time it was received. A splice (failover, new encoder) or a source restarting its clock starts a
new *piece*: the relation between media time and wall clock changes there, and the estimate never
mixes frames from both sides.

``ProgramDateTimes`` turns a segment's media time (its first ``tfdt`` or PES timestamp, relative to
the run's first segment, which starts with the first frame the relay gave the encoder) into a date,
once per run and media time, so every rendition and both packagings get the same date for the same
cut. Inside a run dates follow media time exactly (``PDT + duration = next PDT``); the timeline
moves forward when frames arrived later than it says (an outage, a backup whose picture is newer)
and never back (a backup's cached frames replayed at a failover are older: the timeline holds and
the content is dated as it is shown, logged). Without an arrival for a segment (nothing recorded
near its media time) the caller falls back to the time the segment appeared, with the reason logged.

DASH is not dated here: ffmpeg's dash muxer sets ``availabilityStartTime`` to its own wall clock
when the first encoded packet reaches it (``av_gettime()``), so a DASH client's wall-clock position
is later than the capture by what the encoder holds back (a few frames with zerolatency, a second or
more with B-frames and lookahead); ``ProducerReferenceTime`` is not written. Moving that anchor
earlier would also make clients ask for segments before they exist (it is their availability clock
too), so it stays as ffmpeg writes it.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from .mpegts import CLOCK, sdiff

log = logging.getLogger("onair.transcoder.pdt")

BUCKET_SECONDS = 0.5
# Frames this far either side of a segment's start estimate its arrival: wide enough for many
# read chunks, narrow enough that a source clock drifting against ours (ppm) does not matter.
WINDOW_SECONDS = 5.0
# Media time kept: longer than a segment takes from its first frame to the packager.
KEEP_SECONDS = 120.0
# Closer than this to the run's timeline, an arrival is the timeline (estimation noise, not news).
SNAP_SECONDS = 0.02


@dataclass
class _Piece:
    start: int  # unwrapped decode time of its first frame
    buckets: deque[tuple[int, float]] = field(default_factory=deque)  # (bucket index, min offset)


class ArrivalMap:
    """When the encoder's input frames were received, by decode timestamp (90 kHz, 33-bit)."""

    def __init__(
        self,
        bucket_seconds: float = BUCKET_SECONDS,
        window_seconds: float = WINDOW_SECONDS,
        keep_seconds: float = KEEP_SECONDS,
    ) -> None:
        self.bucket = max(1, int(bucket_seconds * CLOCK))
        self.window = int(window_seconds * CLOCK)
        self.keep = int(keep_seconds * CLOCK)
        self.pieces: list[_Piece] = []
        self._ref: Optional[tuple[int, int]] = None  # (raw, unwrapped) of the latest frame

    def _unwrap(self, dts: int) -> int:
        if self._ref is None:
            return dts
        raw, unwrapped = self._ref
        return unwrapped + sdiff(dts, raw)

    def begin_piece(self, dts: int) -> None:
        """From this frame on, media time and arrival relate anew (a splice, a clock restart)."""
        at = self._unwrap(dts)
        self._ref = (dts, at)
        if self.pieces and self.pieces[-1].start == at and not self.pieces[-1].buckets:
            return
        self.pieces.append(_Piece(at))

    def record(self, dts: int, wall: float) -> None:
        at = self._unwrap(dts)
        if not self.pieces:
            self.pieces.append(_Piece(at))
        piece = self.pieces[-1]
        if at < piece.start:
            return  # a frame the splice dropped: its time belongs to the previous relation
        self._ref = (dts, at) if self._ref is None or at >= self._ref[1] else self._ref
        offset = wall - at / CLOCK
        index = at // self.bucket
        buckets = piece.buckets
        if buckets and buckets[-1][0] == index:
            if offset < buckets[-1][1]:
                buckets[-1] = (index, offset)
        elif not buckets or buckets[-1][0] < index:
            buckets.append((index, offset))
        else:  # out of decode order: rare, small
            for i, (b, o) in enumerate(buckets):
                if b == index:
                    buckets[i] = (b, min(o, offset))
                    break
            else:
                bisect.insort(buckets, (index, offset))
        self._forget(at)

    def _forget(self, now: int) -> None:
        horizon = (now - self.keep) // self.bucket
        for piece in self.pieces:
            while piece.buckets and piece.buckets[0][0] < horizon:
                piece.buckets.popleft()
        while len(self.pieces) > 1 and not self.pieces[0].buckets:
            self.pieces.pop(0)

    def lookup(self, dts: int) -> tuple[Optional[float], str]:
        """The wall-clock time (Unix seconds) the frame with this decode time was received, or
        None and why not."""
        if not self.pieces:
            return None, "no frame arrival recorded yet"
        at = self._unwrap(dts)
        piece = next((p for p in reversed(self.pieces) if p.start <= at), None)
        if piece is None:
            return None, f"media time {dts} is older than every recorded frame arrival"
        low, high = (at - self.window) // self.bucket, (at + self.window) // self.bucket
        offsets = [o for b, o in piece.buckets if low <= b <= high]
        if not offsets:
            return None, (
                f"no frame arrival recorded within {self.window / CLOCK:g} s of media time {dts} "
                f"(kept: the last {self.keep / CLOCK:g} s)"
            )
        return min(offsets) + at / CLOCK, ""


@dataclass
class _Run:
    run_id: str
    start_dts: Optional[int] = None
    first: dict[object, float] = field(default_factory=dict)  # rendition -> media time of its first segment
    epochs: list[tuple[float, float]] = field(default_factory=list)  # (relative media time, wall) sorted
    decided: dict[int, float] = field(default_factory=dict)  # relative media time (ms) -> wall
    held_logged: bool = False
    not_before: Optional[float] = None  # the previous run's end: dates never go back


class ProgramDateTimes:
    """A segment's date from its media time, the same in every rendition of a run."""

    def __init__(
        self, arrivals: ArrivalMap, run_start: Callable[[], Optional[int]], snap_seconds: float = SNAP_SECONDS
    ) -> None:
        self.arrivals = arrivals
        self.run_start = run_start  # decode time of the first frame the current encoder got
        self.snap = snap_seconds
        self.run: Optional[_Run] = None
        self._end: Optional[float] = None  # latest date + duration handed out

    def begin_run(self, run_id: str) -> None:
        self.run = _Run(run_id, not_before=self._end)

    def date(self, rendition: object, media_seconds: float, duration: float) -> tuple[Optional[datetime], str]:
        """The date of the segment of ``rendition`` that starts at ``media_seconds`` (the
        encoder's output timeline, in seconds, unwrapped), or None and why not."""
        run = self.run
        if run is None:
            return None, "no run"
        if run.start_dts is None:
            run.start_dts = self.run_start()
            if run.start_dts is None:
                return None, "the relay has not told which frame the encoder started with"
        first = run.first.setdefault(rendition, media_seconds)
        relative = media_seconds - first
        key = round(relative * 1000)
        wall = run.decided.get(key)
        if wall is None:
            wall, why = self._decide(run, relative)
            if wall is None:
                return None, why
            run.decided[key] = wall
            if len(run.decided) > 4096:
                del run.decided[next(iter(run.decided))]
        self._end = max(self._end or wall, wall + duration)
        return datetime.fromtimestamp(wall, timezone.utc), ""

    def _decide(self, run: _Run, relative: float) -> tuple[Optional[float], str]:
        assert run.start_dts is not None
        dts = (run.start_dts + round(relative * CLOCK)) % (1 << 33)
        arrived, why = self.arrivals.lookup(dts)
        i = bisect.bisect_right(run.epochs, (relative, float("inf"))) - 1
        timeline = run.epochs[i][1] + (relative - run.epochs[i][0]) if i >= 0 else None
        if arrived is None:
            if timeline is None:
                return None, why
            return timeline, ""  # the run's timeline carries on where no arrival is known
        if timeline is None:
            if run.not_before is not None and arrived < run.not_before:
                log.info(
                    "run %s starts with frames received %.3f s before the previous run's last segment ended "
                    "(replayed from the cache): dated from that end",
                    run.run_id,
                    run.not_before - arrived,
                )
                arrived = run.not_before
            run.epochs.append((relative, arrived))
            return arrived, ""
        if arrived > timeline + self.snap and i == len(run.epochs) - 1:
            run.epochs.append((relative, arrived))  # real time passed without media: move forward
            return arrived, ""
        if arrived < timeline - self.snap and not run.held_logged:
            run.held_logged = True
            log.info(
                "run %s: frames at %.3f s were received %.3f s before the timeline's date "
                "(older frames spliced in): dates keep to the timeline, which never goes back",
                run.run_id,
                relative,
                timeline - arrived,
            )
        return timeline, ""
