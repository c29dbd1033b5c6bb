"""What ffmpeg prints, as numbers and facts: the encoder's speed (Gcore's ``transcoding_speed``),
what a reader's input carries (the ladder is fitted to it), and the ``-progress`` blocks and
the few log lines the recorder acts on. One parser for every role that runs ffmpeg.

``-progress pipe:1`` prints ``key=value`` lines ending with ``progress=continue|end``; ffmpeg only
prints a block after it has muxed packets, so a block whose ``out_time_us`` moved is the proof
that media is flowing, and no such block for a while means the source stalled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

_SPEED = re.compile(r"(?:^|\s)speed=\s*([0-9]+(?:\.[0-9]+)?)x")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+)(?P<rest>.*)$")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (?P<codec>\w+)")
_SIZE = re.compile(r"(?:,|\s)(?P<w>[1-9][0-9]{1,4})x(?P<h>[1-9][0-9]{1,4})(?=[\s,\[]|$)")
_FPS = re.compile(r"(?P<fps>[0-9]+(?:\.[0-9]+)?)(?P<k>k?) fps")
_TBR = re.compile(r"(?P<fps>[0-9]+(?:\.[0-9]+)?)(?P<k>k?) tbr")


def parse_speed(line: str) -> Optional[float]:
    """``speed=1.01x`` from a stats line or a ``-progress`` line; None for ``speed=N/A``."""
    match = _SPEED.search(line)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class InputVideo:
    codec: str
    width: int
    height: int
    fps: Optional[float]


def parse_video_stream(line: str) -> Optional[InputVideo]:
    """``Stream #0:1: Video: h264 (High), yuv420p(progressive), 1920x1080 [SAR 1:1 DAR 16:9], 30 fps``."""
    match = _VIDEO.search(line)
    if not match:
        return None
    rest = match.group("rest")
    size = _SIZE.search(rest)
    if not size:
        return None
    estimates = []
    for pattern in (_FPS, _TBR):
        rate = pattern.search(rest)
        if rate:
            estimates.append(float(rate.group("fps")) * (1000 if rate.group("k") else 1))
    return InputVideo(match.group("codec"), int(size.group("w")), int(size.group("h")), frame_rate_of(estimates))


# Camera and encoder frame rates. FLV (RTMP) timestamps are whole milliseconds and its metadata is
# optional, so ffmpeg's two figures for a live RTMP input are estimates that can miss the real rate
# either way ("29 fps, 29.97 tbr", "30.30 fps, 29.92 tbr" for 30000/1001); encoding at a missed
# rate drops or repeats a frame every second or so.
STANDARD_FRAME_RATES = (
    10.0, 12.0, 12.5, 15.0, 20.0, 24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0,
    48.0, 50.0, 60000 / 1001, 60.0, 72.0, 90.0, 100.0, 120000 / 1001, 120.0, 144.0,
)  # fmt: skip
# How far off an estimate may be and still be read as a standard rate.
FRAME_RATE_TOLERANCE = 0.02


def frame_rate_of(estimates: list[float]) -> Optional[float]:
    """The frame rate ffmpeg's figures (``fps`` first, then ``tbr``) point to: the standard rate
    nearest to either of them, whichever estimate is nearer one, if within the tolerance; else
    ffmpeg's ``fps`` as printed (a rate of its own, e.g. a screen capture at 17 fps)."""
    best: Optional[tuple[float, float]] = None
    for estimate in estimates:
        if estimate <= 0:
            continue
        standard = min(STANDARD_FRAME_RATES, key=lambda rate: abs(rate - estimate) / rate)
        error = abs(standard - estimate) / standard
        if error <= FRAME_RATE_TOLERANCE and (best is None or error < best[0]):
            best = (error, standard)
    if best is not None:
        return best[1]
    return next((e for e in estimates if e > 0), None)


class InputProbe:
    """Follows a reader's stderr and keeps what its *input* carries (not its output)."""

    def __init__(self) -> None:
        self.video: Optional[InputVideo] = None
        self.audio_codec: Optional[str] = None
        self._section: Optional[str] = None

    def reset(self) -> None:
        self.video = self.audio_codec = self._section = None

    def feed(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith("Input #"):
            self._section = "input"
            return
        if stripped.startswith("Output #") or stripped.startswith("Stream mapping"):
            self._section = "output"
            return
        if self._section != "input":
            return
        video = parse_video_stream(stripped)
        if video and self.video is None:
            self.video = video
            return
        audio = _AUDIO.search(stripped)
        if audio and self.audio_codec is None:
            self.audio_codec = audio.group("codec")


PROGRESS_KEYS = frozenset(
    {
        "frame",
        "fps",
        "bitrate",
        "total_size",
        "out_time_us",
        "out_time_ms",
        "out_time",
        "dup_frames",
        "drop_frames",
        "speed",
        "progress",
    }
)
# ffmpeg pads some values (``speed= 1.2x``).
_KEY_VALUE = re.compile(r"^(?P<key>[a-z_0-9]+)=\s*(?P<value>\S*)\s*$")

DISK_FULL_MARKERS = ("No space left on device", "Disk quota exceeded")
# A new publisher on the same RTMP stream restarts its timestamps under a connected reader;
# copying on would pile the new media onto the old timeline, so the run must start over.
# Encoders jitter a DTS backwards now and then, which ffmpeg fixes up harmlessly: only a burst
# (every packet going backwards) is a new timeline.
NON_MONOTONIC_MARKERS = ("Non-monotonous DTS", "non monotonically increasing dts")
DISCONTINUITY_WARNINGS_PER_BLOCK = 10


@dataclass
class LineKind:
    progress: bool = False
    advanced: bool = False
    disk_full: bool = False
    discontinuity: bool = False
    message: Optional[str] = None


@dataclass
class ProgressReader:
    """State of one ffmpeg run, fed line by line."""

    out_time_seconds: float = 0.0
    blocks: int = 0
    last_message: Optional[str] = None
    disk_full: bool = False
    _pending_out_time: Optional[float] = field(default=None, repr=False)
    _non_monotonic: int = field(default=0, repr=False)

    def feed(self, line: str) -> LineKind:
        match = _KEY_VALUE.match(line.strip())
        if match and (match["key"] in PROGRESS_KEYS or match["key"].startswith("stream_")):
            return self._feed_progress(match["key"], match["value"])
        kind = LineKind(message=line)
        if any(marker in line for marker in DISK_FULL_MARKERS):
            kind.disk_full = True
            self.disk_full = True
        if any(marker in line for marker in NON_MONOTONIC_MARKERS):
            self._non_monotonic += 1
            if self._non_monotonic == DISCONTINUITY_WARNINGS_PER_BLOCK:
                kind.discontinuity = True
        self.last_message = line
        return kind

    def _feed_progress(self, key: str, value: str) -> LineKind:
        kind = LineKind(progress=True)
        if key == "out_time_us":
            try:
                self._pending_out_time = max(0.0, int(value) / 1_000_000)
            except ValueError:  # N/A before the first packet
                self._pending_out_time = None
        elif key == "progress":
            self.blocks += 1
            if self._pending_out_time is not None and (
                self.blocks == 1 or self._pending_out_time > self.out_time_seconds
            ):
                self.out_time_seconds = max(self.out_time_seconds, self._pending_out_time)
                kind.advanced = True
            self._pending_out_time = None
            self._non_monotonic = 0
        return kind
