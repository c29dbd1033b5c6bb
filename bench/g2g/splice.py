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
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence

import m3u8

from bench.waiting import wait_until

from . import clock
from .camera import Camera

FRAME_MS = 1000 / 30


@dataclass(frozen=True)
class Frame:
    pts_ms: float
    captured_ms: Optional[int]  # None: the band did not read (a smeared frame)


def read_frames(media: bytes, width: int, height: int, ffmpeg: str = "ffmpeg", timeout: float = 120) -> list[Frame]:
    """Every frame of ``media`` (an init segment + media segments, or any file ffmpeg reads)."""
    band = clock.band_height(height)
    out = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-i",
            "pipe:0",
            "-map",
            "0:v:0",
            "-vf",
            f"crop={width}:{band}:0:0,showinfo",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "pipe:1",
        ],
        input=media,
        capture_output=True,
        timeout=timeout,
        check=True,
    )
    pts = [float(m) * 1000 for m in re.findall(rb"pts_time:\s*([-0-9.]+)", out.stderr)]
    size = width * band
    frames = []
    for index, at in enumerate(range(0, len(out.stdout) - size + 1, size)):
        raw = out.stdout[at : at + size]
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
        return (
            f"repeated {self.repeat_ms:.0f} ms, skipped {self.skip_ms:.0f} ms, latency after - before "
            f"{self.latency_shift_ms:+.0f} ms ({self.frames} frames around the switch)"
        )


def switch_figures(
    frames: Sequence[Frame], switched_at_ms: float, *, settle_ms: float = 5000, window_ms: float = 4000
) -> SwitchFigures:
    """Figures of the switch decided at wall time ``switched_at_ms`` (Unix ms): its content is at
    most a few seconds older than that (the encoders' and the relay's delay), so the switch lies
    in the ``settle_ms`` of media time after the first frame captured 3 s before it; the latency
    windows are the ``window_ms`` before that and after the settling."""
    readable = [f for f in frames if f.captured_ms is not None]
    start = next(f.pts_ms for f in readable if f.captured_ms >= switched_at_ms - 3000)  # type: ignore[operator]
    around = [f for f in readable if start <= f.pts_ms <= start + settle_ms]
    before = [f.pts_ms - f.captured_ms for f in readable if start - window_ms <= f.pts_ms < start]  # type: ignore[operator]
    after = [
        f.pts_ms - f.captured_ms
        for f in readable  # type: ignore[operator]
        if start + settle_ms < f.pts_ms <= start + settle_ms + window_ms
    ]
    if len(around) < 2 or not before or not after:
        raise ValueError(
            f"too few readable frames around the switch at {switched_at_ms:.0f}: {len(around)} around, "
            f"{len(before)} before, {len(after)} after"
        )
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


# ----------------------------------------------------------------------------- the scenario
class PlaylistRecording:
    """Every segment an HLS CMAF playlist listed, kept before its window drops it."""

    def __init__(self, rendition: Path) -> None:
        self.dir = rendition
        self.init: bytes = b""
        self.segments: dict[str, bytes] = {}
        self.discontinuities = 0

    def poll(self) -> int:
        try:
            playlist = m3u8.loads((self.dir / "index.m3u8").read_text())
        except FileNotFoundError:
            return 0
        for segment in playlist.segments:
            if segment.uri not in self.segments:
                self.discontinuities += bool(segment.discontinuity)
                self.init = self.init or (self.dir / segment.init_section.uri).read_bytes()
                self.segments[segment.uri] = (self.dir / segment.uri).read_bytes()
        return len(self.segments)

    def keep_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()
            time.sleep(0.2)

    def media(self) -> bytes:
        return self.init + b"".join(self.segments.values())


def switch_time_ms(log: str, switch: str, not_before_ms: float = 0.0) -> float:
    """When the transcoder's log says it made ``switch`` ("main -> backup"), Unix ms: the first such
    switch from ``not_before_ms`` on (a loaded machine can starve a reader into an earlier one)."""
    for line in log.splitlines():
        if f"source switch: {switch}" in line:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000
            if at >= not_before_ms:
                return at
    raise ValueError(f"the transcoder's log has no {switch!r} switch after {not_before_ms:.0f}")


def failover_and_return(
    tx,
    url: Callable[[str], str],
    rung: str,
    *,
    width: int,
    height: int,
    fps: int = 30,
    gop_seconds: float = 2.0,
    kill_frames_before_key: int = 12,
) -> dict[str, SwitchFigures]:
    """One camera feeding two encoders (two cameras painting the same clock, the wall clock at
    capture) push main and backup to the transcoder ``tx`` (a tests.fixtures.transcoder handle,
    started with main and backup); main's encoder is killed ``kill_frames_before_key`` frames
    before the backup's next keyframe (its cached GOP then holds much that viewers saw from main),
    a new one comes back and takes over. Figures of both switches, read off every frame of the
    ``rung`` CMAF rendition."""

    def camera(name: str) -> Camera:
        return Camera(
            url(name),
            width=width,
            height=height,
            fps=fps,
            bitrate_kbps=600,
            keyframe_seconds=gop_seconds,
            encoder="obs",
        ).start()

    main, backup = camera("main"), camera("backup")
    recording = PlaylistRecording(tx.out / "hls/cmaf" / rung)
    try:
        tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
        tx.put_desired(phase="live", broadcasting=True)
        wait_until(recording.poll, 40, "first segment")
        recording.keep_for(8)
        gop = round(fps * gop_seconds)
        wait_until(lambda: backup.frames % gop == gop - kill_frames_before_key, 10, "the backup late in its GOP", 0.005)
        assert main.proc is not None
        caused = {"main -> backup": time.time() * 1000}
        main.proc.kill()
        tx.wait_status(lambda s: s.get("activeSource") == "backup", 10, "backup on air")
        recording.keep_for(12)
        main.stop()
        caused["backup -> main"] = time.time() * 1000
        main = camera("main")
        tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main back on air")
        recording.keep_for(14)
    finally:
        main.stop()
        backup.stop()
    if recording.discontinuities:
        raise AssertionError(
            f"{recording.discontinuities} discontinuities: a failover must be a splice in the same run"
        )
    frames = read_frames(recording.media(), width, height)
    unreadable = sum(f.captured_ms is None for f in frames)
    if unreadable > len(frames) // 20:
        raise AssertionError(f"{unreadable} of {len(frames)} frames without a readable clock")
    log = tx.log_text()
    return {
        switch: switch_figures(frames, switch_time_ms(log, switch, not_before_ms))
        for switch, not_before_ms in caused.items()
    }
