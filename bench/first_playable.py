"""Publish -> first playable: how long after an encoder starts pushing viewers can start.

The transcoder agent already broadcasts (desired set) and waits for a source; a 640x360 synthetic
publisher starts at t0. Playable = the CMAF master and every rung's media playlist exist with
at least one segment (hls.js can start); "3 segments" is where hls.js sits at its default live
sync distance. Prints figures, asserts nothing.

    python bench/first_playable.py [--trials 3] [--segments 1,2]
"""

from __future__ import annotations

import argparse
import time

from _transcoder_common import load, rig, stats, wait

import m3u8  # noqa: E402


def segments(out, rung: str) -> int:
    try:
        return len(m3u8.loads((out / "hls/cmaf" / rung / "index.m3u8").read_text()).segments)
    except FileNotFoundError:
        return 0


def trial(segment_seconds: float) -> tuple[float | None, float | None, float | None]:
    rungs = ("360p", "240p")
    with rig("onair-first-playable-") as r:
        tx = r.transcoders.start(
            main_url=r.rtmp.url("main"),
            tracks=list(rungs),
            source_size=(640, 360),
            segment_seconds=segment_seconds,
            preset="veryfast",
        )
        tx.put_desired(phase="live", broadcasting=True)
        r.publishers.rtmp(r.rtmp.url("main"), width=640, height=360)
        t0 = time.monotonic()
        selected = wait(lambda: tx.status().get("activeSource") == "main", 30)
        first = wait(
            lambda: (tx.out / "hls/cmaf/master.m3u8").exists() and all(segments(tx.out, x) >= 1 for x in rungs), 40
        )
        third = wait(lambda: all(segments(tx.out, x) >= 3 for x in rungs), 40)
        return tuple(None if t is None else t - t0 for t in (selected, first, third))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--segments", default="1,2")
    args = parser.parse_args()
    for seg in (float(s) for s in args.segments.split(",")):
        selected, first, third = [], [], []
        for _ in range(args.trials):
            s, f, t = trial(seg)
            for bucket, value in ((selected, s), (first, f), (third, t)):
                if value is not None:
                    bucket.append(value)
        print(f"--- {seg:g} s segments ({load()})")
        print(f"publish -> source selected:          {stats(selected)}")
        print(f"publish -> first playable (1 seg):   {stats(first)}")
        print(f"publish -> 3 segments listed:        {stats(third)}", flush=True)


if __name__ == "__main__":
    main()
