"""The glass-to-glass instrument itself, before it measures onair: the camera's stamped frames,
encoded by ffmpeg into plain HLS on disk, played by stock hls.js in headless Chromium, read back
by the measuring page as capture times that only move forward and give a positive latency."""
from __future__ import annotations

import asyncio
import time

import pytest

from bench.g2g import server
from bench.g2g.camera import Camera

pytestmark = [pytest.mark.media, pytest.mark.browser]


async def test_the_page_reads_the_capture_time_painted_into_the_frames(browser, tmp_path):
    stream = tmp_path / "stream"
    stream.mkdir()
    camera = Camera(str(stream / "index.m3u8"), fmt="hls", width=640, height=360, fps=30, bitrate_kbps=800,
                    keyframe_seconds=1, encoder="zerolatency")
    camera.argv = _with_hls_options(camera.argv)  # type: ignore[method-assign]
    runner, base = await server.serve(static={"/stream": stream})
    camera.start()
    try:
        deadline = time.monotonic() + 30
        while not (stream / "index.m3u8").is_file():
            assert time.monotonic() < deadline, "ffmpeg wrote no playlist"
            await asyncio.sleep(0.2)
        page = await browser.new_page(f"{base}/page.html?player=hls&src={base}/stream/index.m3u8")
        await page.wait_for("window.g2g && g2g.samples.length >= 60", timeout=60,
                            what="60 frames read back")
        result = await page.evaluate("g2g")
    finally:
        err = camera.stop()
        await runner.cleanup()
    assert not result["errors"], result["errors"]
    samples = result["samples"]
    latencies = [s["latency"] for s in samples]
    # Plain HLS of 1 s segments, three behind the live edge: seconds, never negative or minutes.
    assert all(0.05 < latency < 20 for latency in latencies), latencies
    captured = [s["captured"] for s in samples]
    # A misread band would jump around; a frame shown twice (the player repeating it) may repeat.
    assert all(b >= a for a, b in zip(captured, captured[1:])), captured
    # Frames are stamped 1/30 s apart (a busy machine bunches some): the page reads per-frame stamps.
    steps = sorted(b - a for a, b in zip(captured, captured[1:]) if b > a)
    assert 20 < steps[len(steps) // 2] < 50, steps
    assert result["unreadable"] <= len(samples) // 10, result
    assert "Error" not in err, err


def _with_hls_options(argv):
    def patched() -> list[str]:
        args = argv()
        return args[:-3] + ["-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
                            "-hls_flags", "delete_segments+independent_segments", args[-1]]
    return patched


def test_the_camera_keeps_real_time():
    camera = Camera("-", fmt="null", width=320, height=180, fps=30)
    camera.argv = lambda: ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray",  # type: ignore[method-assign]
                           "-s", "320x180", "-framerate", "30", "-i", "-", "-f", "null", "-"]
    started = time.monotonic()
    camera.start()
    time.sleep(2)
    camera.stop()
    elapsed = time.monotonic() - started
    # Paced, not as fast as the pipe takes: about 30 frames a second of wall time.
    assert camera.frames <= 30 * elapsed + 2, (camera.frames, elapsed)
    assert camera.frames >= 30, camera.frames
