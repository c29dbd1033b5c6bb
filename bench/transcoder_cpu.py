"""Transcoder CPU against a bare ffmpeg encoding the same ladder, and the real-time factor.

A pre-encoded 1080p30 clip is published in a loop (-c copy, so publishing costs ~nothing).
Within one invocation, one after the other:

* the transcoder agent (readers + relay + encoder + packager, every process it owns) with the
  3-rung ladder 720p/480p/360p, x264 veryfast, CMAF + TS + DASH + screenshot;
* a bare ffmpeg reading the same RTMP stream with exactly the encoder's arguments.

Each runs ``--seconds`` after a warm-up; CPU is utime+stime from /proc. Reported: cores used,
ffmpeg speed (real-time factor), CPU seconds per media second, and the transcoder/bare ratio.
Prints figures, asserts nothing.

    python bench/transcoder_cpu.py [--seconds 30] [--warmup 8] [--tracks 720p,480p,360p]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time
from pathlib import Path

from _transcoder_common import clip, cpu_seconds, load, publish_clip, rig, tagged_pids

from onair.agent.transcoder.ffmpeg_args import EncoderPlan, encoder_args  # noqa: E402
from onair.render.ladder import build_ladder  # noqa: E402


def measure_transcoder(r, url: str, tracks: list[str], seconds: float, warmup: float) -> dict:
    tx = r.transcoders.start(main_url=url, tracks=tracks, source_size=(1920, 1080), preset="veryfast")
    tx.wait_status(lambda s: s.get("activeSource") == "main", 40, "main")
    tx.put_desired(phase="live", broadcasting=True)
    tx.wait_status(lambda s: s.get("speed") is not None, 60, "encoder speed")
    time.sleep(warmup)
    pids = tagged_pids(tx.tag)
    c0, t0 = cpu_seconds(pids), time.monotonic()
    speeds = []
    while time.monotonic() - t0 < seconds:
        speed = tx.status().get("speed")
        if speed:
            speeds.append(speed)
        time.sleep(1)
    c1, t1 = cpu_seconds(pids), time.monotonic()
    encoder = tx.encoder_pid()
    encoder_cpu = None
    if encoder:
        encoder_cpu = cpu_seconds([encoder])
    result = {"cpu": c1 - c0, "wall": t1 - t0, "speed": statistics.median(speeds) if speeds else None,
              "processes": len(pids), "encoder_total_cpu": encoder_cpu}
    tx.put_desired(broadcasting=False)
    tx.stop()
    return result


def measure_bare(r, url: str, tracks: list[str], seconds: float, warmup: float) -> dict:
    plan = EncoderPlan(rungs=build_ladder(tracks, 1920, 1080, 30), run_id="bare", fps=30, preset="veryfast")
    args = encoder_args(plan)
    start = args.index("-f")  # the encoder's input block: -f mpegts ... -i pipe:0
    end = args.index("pipe:0") + 1
    args[start:end] = ["-i", url]
    work = r.tmp / "bare"
    (work / "dash").mkdir(parents=True)
    log = open(work / "ffmpeg.log", "wb")
    proc = subprocess.Popen(args, cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        time.sleep(warmup + 3)
        c0, t0 = cpu_seconds([proc.pid]), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds([proc.pid]), time.monotonic()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
    text = (work / "ffmpeg.log").read_text(errors="replace")
    speeds = [float(x) for x in re.findall(r"speed=\s*([0-9.]+)x", text)]
    tail = speeds[len(speeds) // 3:] or speeds
    return {"cpu": c1 - c0, "wall": t1 - t0, "speed": statistics.median(tail) if tail else None}


def describe(name: str, m: dict) -> str:
    cores = m["cpu"] / m["wall"]
    per_media = m["cpu"] / (m["wall"] * m["speed"]) if m.get("speed") else float("nan")
    return (f"{name:<11} cores {cores:.2f}, speed {m['speed'] or float('nan'):.2f}x, "
            f"CPU s per media s {per_media:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=8)
    parser.add_argument("--tracks", default="720p,480p,360p")
    args = parser.parse_args()
    tracks = args.tracks.split(",")
    source = clip(1920, 1080)
    print(f"1080p30 source, ladder {tracks}, x264 veryfast, {load()}", flush=True)
    with rig("onair-cpu-") as r:
        publish_clip(r.publishers, source, r.rtmp.url("main"))
        time.sleep(2)
        tx = measure_transcoder(r, r.rtmp.url("main"), tracks, args.seconds, args.warmup)
        bare = measure_bare(r, r.rtmp.url("main"), tracks, args.seconds, args.warmup)
    print(describe("transcoder", tx) + f"  ({tx['processes']} processes)")
    print(describe("bare ffmpeg", bare))
    if tx.get("speed") and bare.get("speed"):
        ratio = (tx["cpu"] / (tx["wall"] * tx["speed"])) / (bare["cpu"] / (bare["wall"] * bare["speed"]))
        print(f"ratio transcoder / bare ffmpeg (CPU per media second): {ratio:.3f}")
    print(f"real-time factor of the {len(tracks)}-rung 1080p30 ladder on this machine: "
          f"{tx['speed'] or float('nan'):.2f}x (transcoder), {bare['speed'] or float('nan'):.2f}x (bare) ({load()})",
          flush=True)


if __name__ == "__main__":
    main()
