"""Transcoder CPU against a bare ffmpeg encoding the same ladder, and the real-time factor.

A pre-encoded 1080p30 clip is published in a loop (-c copy, so publishing costs ~nothing).
Within one invocation, one after the other:

* the transcoder agent (readers + relay + encoder + packager, every process it owns) with the
  3-rung ladder 720p/480p/360p, x264 veryfast, CMAF + TS + DASH + screenshot;
* a bare ffmpeg reading the same RTMP stream with exactly the encoder's arguments.

Each runs ``--seconds`` after a warm-up, alternating for ``--rounds``; CPU is utime+stime from
/proc. Reported: cores used (split per process for the transcoder), ffmpeg speed, CPU seconds
per media second and the transcoder/bare ratio; then the same ladder fed from the file as fast
as it goes (its speed is the real-time factor: how many such streams the cores could carry).
Prints figures, asserts nothing.

    python bench/transcoder_cpu.py [--seconds 30] [--warmup 8] [--rounds 2] [--tracks 720p,480p,360p]
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
    roles = {"agent (python relay + packager)": [tx.proc.pid], "encoder": [tx.encoder_pid()],
             "reader": [p for p in pids if p not in (tx.proc.pid, tx.encoder_pid())]}
    before = {role: cpu_seconds(p) for role, p in roles.items()}
    c0, t0 = cpu_seconds(pids), time.monotonic()
    speeds = []
    while time.monotonic() - t0 < seconds:
        speed = tx.status().get("speed")
        if speed:
            speeds.append(speed)
        time.sleep(1)
    c1, t1 = cpu_seconds(pids), time.monotonic()
    split = {role: (cpu_seconds(p) - before[role]) / (t1 - t0) for role, p in roles.items()}
    result = {"cpu": c1 - c0, "wall": t1 - t0, "speed": statistics.median(speeds) if speeds else None,
              "processes": len(pids), "split": split}
    tx.put_desired(broadcasting=False)
    tx.stop()
    return result


def measure_bare(r, url: str, tracks: list[str], seconds: float, warmup: float) -> dict:
    plan = EncoderPlan(rungs=build_ladder(tracks, 1920, 1080, 30), run_id="bare", fps=30, preset="veryfast")
    args = encoder_args(plan)
    start = args.index("-f")  # the encoder's input block: -f mpegts ... -i pipe:0
    end = args.index("pipe:0") + 1
    args[start:end] = ["-i", url]
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="bare-", dir=r.tmp))
    (work / "dash").mkdir()
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


def measure_throughput(source: Path, tracks: list[str], seconds: float) -> float | None:
    """Speed of the same ladder fed from the file as fast as it goes: the real-time headroom."""
    import tempfile

    plan = EncoderPlan(rungs=build_ladder(tracks, 1920, 1080, 30), run_id="max", fps=30, preset="veryfast")
    args = encoder_args(plan)
    start, end = args.index("-f"), args.index("pipe:0") + 1
    args[start:end] = ["-stream_loop", "-1", "-i", str(source)]
    with tempfile.TemporaryDirectory(prefix="onair-throughput-") as tmp:
        (Path(tmp) / "dash").mkdir()
        proc = subprocess.Popen(args, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            time.sleep(seconds)
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=20)
    speeds = [float(x) for x in re.findall(r"speed=\s*([0-9.]+)x", out.decode(errors="replace"))]
    return speeds[-1] if speeds else None


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
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tracks = args.tracks.split(",")
    source = clip(1920, 1080)
    print(f"1080p30 source, ladder {tracks}, x264 veryfast, {load()}", flush=True)
    ratios = []
    with rig("onair-cpu-") as r:
        publish_clip(r.publishers, source, r.rtmp.url("main"))
        time.sleep(2)
        # Alternate, so a change in background load hits both sides alike.
        for round_ in range(args.rounds):
            tx = measure_transcoder(r, r.rtmp.url("main"), tracks, args.seconds, args.warmup)
            bare = measure_bare(r, r.rtmp.url("main"), tracks, args.seconds, args.warmup)
            print(f"round {round_ + 1} ({load()})")
            print("  " + describe("transcoder", tx) + f"  ({tx['processes']} processes: "
                  + ", ".join(f"{k} {v:.2f} cores" for k, v in tx["split"].items()) + ")")
            print("  " + describe("bare ffmpeg", bare), flush=True)
            if tx.get("speed") and bare.get("speed"):
                ratios.append((tx["cpu"] / (tx["wall"] * tx["speed"])) / (bare["cpu"] / (bare["wall"] * bare["speed"])))
    if ratios:
        print("ratio transcoder / bare ffmpeg (CPU per media second): "
              + ", ".join(f"{x:.3f}" for x in ratios) + f"; mean {statistics.mean(ratios):.3f}")
    print(f"live real-time factor (speed=) of the transcoder: {tx['speed'] or float('nan'):.2f}x")
    throughput = measure_throughput(source, tracks, args.seconds)
    print(f"{len(tracks)}-rung ladder from 1080p30 fed as fast as possible: "
          f"{throughput or float('nan'):.2f}x real time on {__import__('os').cpu_count()} cores ({load()})", flush=True)


if __name__ == "__main__":
    main()
