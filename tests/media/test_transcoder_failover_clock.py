"""A failover neither repeats content nor adds latency, read frame by frame off the output.

One camera feeding two encoders: two cameras (bench/g2g/camera.py) paint the same clock (the
wall clock at capture) into every frame and push main and backup with OBS's x264 settings
(B-frames, lookahead, 2 s GOP). Main's encoder is killed; later it comes back and takes over again.
Every frame of the public CMAF rendition is decoded and its clock read (bench/g2g/splice.py).

Bounds. The new source can only start at one of its keyframes, and a keyframe older than the last
frame viewers saw would show content again (and keep every viewer that much further behind, for
good), so the switch may have to wait for the next one: at most one GOP of the new source's picture
is skipped (the last picture stays on screen meanwhile), plus a frame. Nothing may be repeated and
the latency may not grow, beyond what telling two sources' frames apart by their arrival allows:
one frame interval plus the relay's reading in chunks (``READ_INTERVAL_SECONDS``, 100 ms, on each of
the two sources). Everything compares content timestamps with media timestamps: no wall-clock timing.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import m3u8
import pytest

from bench.g2g.camera import Camera
from bench.g2g.splice import FRAME_MS, read_frames, switch_figures
from tests.fixtures.media import wait_for

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(300)]
RUNG = "180p"
WIDTH, HEIGHT, FPS, GOP_SECONDS = 320, 180, 30, 2.0
REPEAT_BOUND_MS = FRAME_MS + 2 * 100
SKIP_BOUND_MS = GOP_SECONDS * 1000 + FRAME_MS + 2 * 100


def camera(url: str) -> Camera:
    return Camera(url, width=WIDTH, height=HEIGHT, fps=FPS, bitrate_kbps=600, keyframe_seconds=GOP_SECONDS,
                  encoder="obs").start()


class Recording:
    """Every segment the CMAF playlist listed, kept before the window drops it."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "hls/cmaf" / RUNG
        self.init: bytes = b""
        self.segments: dict[str, bytes] = {}

    def poll(self) -> int:
        try:
            playlist = m3u8.loads((self.dir / "index.m3u8").read_text())
        except FileNotFoundError:
            return 0
        for segment in playlist.segments:
            if segment.uri not in self.segments:
                assert not segment.discontinuity, "a failover is a splice in the same run"
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


def switch_time_ms(log: str, switch: str) -> float:
    line = next(line for line in log.splitlines() if f"source switch: {switch}" in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000


def test_failover_and_return_neither_repeat_content_nor_add_latency(rtmp_server, transcoder_agent):
    tx = transcoder_agent.start(main_url=rtmp_server.url("main"), backup_url=rtmp_server.url("backup"),
                                tracks=[RUNG], source_size=(WIDTH, HEIGHT), hls_mpegts=False, dash=False,
                                screenshot_interval_seconds=0, segment_seconds=1.0, return_seconds=2.0)
    main, backup = camera(rtmp_server.url("main")), camera(rtmp_server.url("backup"))
    try:
        tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
        tx.put_desired(phase="live", broadcasting=True)
        recording = Recording(tx.out)
        wait_for(recording.poll, 40, interval=0.2, what="the first segment")
        recording.keep_for(8)
        # Kill main late in the backup's GOP: its cached keyframe then holds well over a second
        # that viewers already saw from main.
        gop = round(FPS * GOP_SECONDS)
        wait_for(lambda: backup.frames % gop == gop - 12, 10, interval=0.005, what="the backup late in its GOP")
        assert main.proc is not None
        main.proc.kill()
        tx.wait_status(lambda s: s.get("activeSource") == "backup", 10, "backup on air")
        recording.keep_for(12)
        main.stop()
        main = camera(rtmp_server.url("main"))
        tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main back on air")
        recording.keep_for(14)
    finally:
        main.stop()
        backup.stop()

    frames = read_frames(recording.media(), WIDTH, HEIGHT)
    unreadable = sum(f.captured_ms is None for f in frames)
    assert unreadable <= len(frames) // 20, f"{unreadable} of {len(frames)} frames without a readable clock"
    log = tx.log_text()
    switches = {switch: switch_figures(frames, switch_time_ms(log, switch)) for switch in ("main -> backup", "backup -> main")}
    for switch, figures in switches.items():
        print(f"{switch}: {figures}")
    for switch, figures in switches.items():
        assert figures.repeat_ms <= REPEAT_BOUND_MS, f"{switch}: content repeated ({figures})"
        assert figures.skip_ms <= SKIP_BOUND_MS, f"{switch}: more than a GOP skipped ({figures})"
        assert figures.latency_shift_ms <= REPEAT_BOUND_MS, f"{switch}: latency added ({figures})"
