"""Frame-exact reading of a source switch from the output itself: every decoded frame's media time
(pts) and the capture time painted in it (clock.py), and from those, around a switch,

* ``repeat_ms``: content shown a second time (the clock going back);
* ``skip_ms``: content never shown (the clock jumping forward by more than one frame; a frozen
  picture while the new source has no keyframe yet);
* ``latency_shift_ms``: how much older the content is at the same media time after the switch
  than before (capture - pts, medians of a window each side). A player plays media time at wall
  speed, so a positive shift is latency every viewer keeps until they reload; it compares content
  timestamps only, never how fast this machine ran.
"""
from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass
from typing import Optional, Sequence

from . import clock

FRAME_MS = 1000 / 30


@dataclass(frozen=True)
class Frame:
    pts_ms: float
    captured_ms: Optional[int]  # None: the band did not read (a smeared frame)


def read_frames(media: bytes, width: int, height: int, ffmpeg: str = "ffmpeg", timeout: float = 120) -> list[Frame]:
    """Every frame of ``media`` (an init segment + media segments, or any file ffmpeg reads)."""
    band = clock.band_height(height)
    out = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", "pipe:0", "-map", "0:v:0",
                          "-vf", f"crop={width}:{band}:0:0,showinfo", "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
                         input=media, capture_output=True, timeout=timeout, check=True)
    pts = [float(m) * 1000 for m in re.findall(rb"pts_time:\s*([-0-9.]+)", out.stderr)]
    size = width * band
    frames = []
    for index, at in enumerate(range(0, len(out.stdout) - size + 1, size)):
        raw = out.stdout[at:at + size]
        value = clock.read_band(lambda x, y, raw=raw: raw[y * width + x], width, height)
        frames.append(Frame(pts[index], value))
    return frames


@dataclass(frozen=True)
class SwitchFigures:
    repeat_ms: float
    skip_ms: float
    # Medians of pts - capture (an arbitrary origin: only their difference means something).
    latency_before_ms: float
    latency_after_ms: float
    frames: int

    @property
    def latency_shift_ms(self) -> float:
        return self.latency_after_ms - self.latency_before_ms

    def __str__(self) -> str:
        return (f"repeated {self.repeat_ms:.0f} ms, skipped {self.skip_ms:.0f} ms, latency after - before "
                f"{self.latency_shift_ms:+.0f} ms ({self.frames} frames around the switch)")


def switch_figures(frames: Sequence[Frame], switched_at_ms: float, *, settle_ms: float = 5000,
                   window_ms: float = 4000) -> SwitchFigures:
    """Figures of the switch decided at wall time ``switched_at_ms`` (Unix ms): its content is at
    most a few seconds older than that (the encoders' and the relay's delay), so the switch lies
    in the ``settle_ms`` of media time after the first frame captured 3 s before it; the latency
    windows are the ``window_ms`` before that and after the settling."""
    readable = [f for f in frames if f.captured_ms is not None]
    start = next(f.pts_ms for f in readable if f.captured_ms >= switched_at_ms - 3000)  # type: ignore[operator]
    around = [f for f in readable if start <= f.pts_ms <= start + settle_ms]
    before = [f.pts_ms - f.captured_ms for f in readable if start - window_ms <= f.pts_ms < start]  # type: ignore[operator]
    after = [f.pts_ms - f.captured_ms for f in readable  # type: ignore[operator]
             if start + settle_ms < f.pts_ms <= start + settle_ms + window_ms]
    if len(around) < 2 or not before or not after:
        raise ValueError(f"too few readable frames around the switch at {switched_at_ms:.0f}: {len(around)} around, "
                         f"{len(before)} before, {len(after)} after")
    repeat = 0.0
    newest = around[0].captured_ms
    skip = 0.0
    previous = around[0].captured_ms
    for f in around[1:]:
        assert f.captured_ms is not None and newest is not None and previous is not None
        repeat = max(repeat, newest - f.captured_ms)
        if f.captured_ms > previous:
            skip = max(skip, f.captured_ms - previous - FRAME_MS)
        newest = max(newest, f.captured_ms)
        previous = f.captured_ms
    return SwitchFigures(repeat, max(0.0, skip), statistics.median(before), statistics.median(after), len(around))
