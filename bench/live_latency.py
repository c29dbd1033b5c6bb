"""Live latency a viewer of the origin's /player sees: encoder wall clock -> hls.js playhead.

Chain: ffmpeg (synthetic 640x360 source, 2-rung fMP4 ladder, program-date-time, -re) PUTs to
a real origin; headless Chromium plays /player with hls.js; latency = now - hls.playingDate
(the EXT-X-PROGRAM-DATE-TIME of what is on screen). Prints figures, asserts nothing.

    python bench/live_latency.py [--segment-seconds 2] [--samples 10] [--interval 2]

Needs ffmpeg, /usr/bin/chromium and hls.js (scripts/build-player).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from onair.agent.origin.server import HLS_JS  # noqa: E402
from tests.fixtures.browser import launch  # noqa: E402
from tests.fixtures.media import wait_for  # noqa: E402
from tests.fixtures.origin import LadderRung, OriginFactory, FfmpegUploaderFactory  # noqa: E402

LADDER = (LadderRung("360p", 640, 360, 600), LadderRung("180p", 320, 180, 200))


async def measure(segment_seconds: float, samples: int, interval: float) -> None:
    if not HLS_JS.is_file():
        raise SystemExit("hls.js is not built: run scripts/build-player")
    with tempfile.TemporaryDirectory(prefix="onair-latency-") as tmp:
        tmp_path = Path(tmp)
        origins, transcoders = OriginFactory(tmp_path), FfmpegUploaderFactory(tmp_path)
        browser = None
        try:
            origin = origins.start(phase="live")
            started = time.monotonic()
            transcoders.start(origin, ladder=LADDER, segment_seconds=segment_seconds, list_size=6)

            def first_segment() -> bool:
                return origin.get("hls/cmaf/360p/index.m3u8").status_code == 200

            await asyncio.to_thread(wait_for, first_segment, 60, 0.1, "the first segment")
            first_playlist = time.monotonic() - started

            browser = await launch(tmp_path)
            opened = time.monotonic()
            page = await browser.new_page(origin.url("player"))
            await page.wait_for("document.getElementById('video').currentTime > 0", timeout=60, interval=0.1)
            first_frame = time.monotonic() - opened
            figures = []
            for _ in range(samples):
                await asyncio.sleep(interval)
                figures.append(await page.evaluate("(Date.now() - onairPlayer.hls.playingDate.getTime()) / 1000"))
            errors = await page.evaluate("onairPlayer.errors")
            print("samples (s)               ", " ".join(f"{f:.3f}" for f in figures))
            print(
                f"segment duration          {segment_seconds:.1f} s (hls.js defaults: 3 target durations behind the edge)"
            )
            print(f"encoder start -> playlist {first_playlist:.2f} s")
            print(f"page open -> playing      {first_frame:.2f} s")
            print(
                f"live latency              median {statistics.median(figures):.2f} s, "
                f"min {min(figures):.2f} s, max {max(figures):.2f} s over {len(figures)} samples"
            )
            print(f"hls.js errors             {len(errors)} {errors[:3] if errors else ''}")
        finally:
            if browser:
                await browser.close()
            transcoders.close()
            origins.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(measure(args.segment_seconds, args.samples, args.interval))


if __name__ == "__main__":
    main()
