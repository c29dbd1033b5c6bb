"""Transcoder CPU against a bare ffmpeg encoding the same ladder, and the real-time factor.

A pre-encoded 1080p30 clip is published in a loop (-c copy, so publishing costs ~nothing).
Both sides read that same live stream AT THE SAME TIME, so background load hits them alike:

* the transcoder agent (readers + relay + encoder + packager) with the 3-rung ladder
  720p/480p/360p, x264 veryfast, CMAF + TS + DASH + screenshot;
* a bare ffmpeg reading the same RTMP stream with exactly the encoder's arguments.

After ``--warmup`` seconds of steady state, ``--rounds`` consecutive windows of ``--seconds``
each: per window, the CPU seconds (utime+stime from /proc) of the transcoder's whole process
tree (the agent, every descendant, and the descendants it reaped) against the bare ffmpeg's,
over the same wall-clock window, and their ratio; then the median ratio. Both encoders get the
same media per window (same live source), so no division by ffmpeg's speed= is needed. The
older speed-normalised figures are printed alongside for comparison. Then the same ladder fed
from the file as fast as it goes (its speed is the real-time factor). Prints figures, asserts
nothing.

Output goes to a directory (``--sink dir``, a shared volume) or, as in the cluster, over HTTP
to a real origin agent (``--sink http``: the uploads are the transcoder's work too; the
origin's CPU is printed apart, it is not part of the transcoder tree).

    python bench/transcoder_cpu.py [--seconds 20] [--warmup 8] [--rounds 5] [--tracks 720p,480p,360p]
                                   [--sink dir|http]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _transcoder_common import CLK_TCK, clip, cpu_seconds, load, publish_clip, rig, tagged_pids, tree_cpu_seconds

from tests.fixtures.origin import OriginFactory  # noqa: E402

from onair.agent.transcoder.ffmpeg_args import EncoderPlan, encoder_args  # noqa: E402
from onair.render.ladder import build_ladder  # noqa: E402


def start_bare(r, url: str, tracks: list[str]) -> tuple[subprocess.Popen, Path]:
    plan = EncoderPlan(rungs=build_ladder(tracks, 1920, 1080, 30), run_id="bare", fps=30, preset="veryfast")
    args = encoder_args(plan)
    start = args.index("-f")  # the encoder's input block: -f mpegts ... -i pipe:0
    end = args.index("pipe:0") + 1
    args[start:end] = ["-i", url]
    work = Path(tempfile.mkdtemp(prefix="bare-", dir=r.tmp))
    (work / "dash").mkdir()
    with open(work / "ffmpeg.log", "wb") as log:
        proc = subprocess.Popen(
            args, cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, work / "ffmpeg.log"


def stop_bare(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _stime(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[12]) / CLK_TCK
    except OSError:
        return 0.0


def bare_speed(log: Path, skip: int) -> tuple[float | None, int]:
    """Median speed= of the progress lines after the first ``skip``; and how many there are."""
    speeds = [float(x) for x in re.findall(r"speed=\s*([0-9.]+)x", log.read_text(errors="replace"))]
    window = speeds[skip:]
    return (statistics.median(window) if window else None), len(speeds)


def measure_throughput(source: Path, tracks: list[str], seconds: float) -> float | None:
    """Speed of the same ladder fed from the file as fast as it goes: the real-time headroom."""
    plan = EncoderPlan(rungs=build_ladder(tracks, 1920, 1080, 30), run_id="max", fps=30, preset="veryfast")
    args = encoder_args(plan)
    start, end = args.index("-f"), args.index("pipe:0") + 1
    args[start:end] = ["-stream_loop", "-1", "-i", str(source)]
    with tempfile.TemporaryDirectory(prefix="onair-throughput-") as tmp:
        (Path(tmp) / "dash").mkdir()
        proc = subprocess.Popen(
            args,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            time.sleep(seconds)
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=20)
    speeds = [float(x) for x in re.findall(r"speed=\s*([0-9.]+)x", out.decode(errors="replace"))]
    return speeds[-1] if speeds else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=8)
    parser.add_argument("--tracks", default="720p,480p,360p")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--throughput-seconds", type=float, default=30, help="0 skips the as-fast-as-possible run")
    parser.add_argument(
        "--sink",
        choices=("dir", "http"),
        default="dir",
        help="where the transcoder publishes: a directory, or an origin agent over HTTP",
    )
    args = parser.parse_args()
    tracks = args.tracks.split(",")
    source = clip(1920, 1080)
    print(f"1080p30 source, ladder {tracks}, x264 veryfast, output to {args.sink}, {load()}", flush=True)
    ratios, old_ratios = [], []
    with rig("onair-cpu-") as r:
        url = r.rtmp.url("main")
        publish_clip(r.publishers, source, url)
        time.sleep(2)
        sink: dict = {}
        origin = None
        if args.sink == "http":
            origin = OriginFactory(r.tmp)
            r.extra.append(origin)
            o = origin.start(phase="live", dvr_window_seconds=120)
            token_file = r.tmp / "upload-token"
            token_file.write_text(o.upload_token)
            sink = dict(output_dir=None, output_url=o.upload_url, output_token_file=str(token_file))
        tx = r.transcoders.start(main_url=url, tracks=tracks, source_size=(1920, 1080), preset="veryfast", **sink)
        tx.wait_status(lambda s: s.get("activeSource") == "main", 40, "main")
        tx.put_desired(phase="live", broadcasting=True)
        bare, bare_log = start_bare(r, url, tracks)
        try:
            tx.wait_status(lambda s: s.get("speed") is not None, 60, "encoder speed")
            time.sleep(args.warmup)  # steady state only: no start-up, no first-segment polling
            agent = tx.proc.pid
            for round_ in range(args.rounds):
                encoder = tx.encoder_pid()
                others = [p for p in tagged_pids(tx.tag) if p not in (agent, encoder)]
                sys0 = _stime(agent)
                split0 = {
                    "agent": cpu_seconds([agent]),
                    "encoder": cpu_seconds([encoder] if encoder else []),
                    "readers": cpu_seconds(others),
                }
                _, skip = bare_speed(bare_log, 0)
                origin_pid = origin.handles[0].proc.pid if origin else None
                origin0 = tree_cpu_seconds(origin_pid) if origin_pid else 0.0
                t0, tx0, bare0 = time.monotonic(), tree_cpu_seconds(agent), tree_cpu_seconds(bare.pid)
                speeds = []
                while time.monotonic() - t0 < args.seconds:
                    speed = tx.status().get("speed")
                    if speed:
                        speeds.append(speed)
                    time.sleep(1)
                t1, tx1, bare1 = time.monotonic(), tree_cpu_seconds(agent), tree_cpu_seconds(bare.pid)
                origin_cpu = (tree_cpu_seconds(origin_pid) - origin0) if origin_pid else None
                agent_sys = _stime(agent) - sys0  # kernel side: pipes, reading and writing segments
                split = {
                    "agent": cpu_seconds([agent]) - split0["agent"],
                    "encoder": cpu_seconds([encoder] if encoder else []) - split0["encoder"],
                    "readers": cpu_seconds(others) - split0["readers"],
                }
                wall, tx_cpu, bare_cpu = t1 - t0, tx1 - tx0, bare1 - bare0
                ratio = tx_cpu / bare_cpu if bare_cpu else float("nan")
                ratios.append(ratio)
                tx_speed = statistics.median(speeds) if speeds else None
                b_speed, _ = bare_speed(bare_log, skip)
                old = ((tx_cpu / tx_speed) / (bare_cpu / b_speed)) if tx_speed and b_speed and bare_cpu else None
                if old is not None:
                    old_ratios.append(old)
                print(
                    f"round {round_ + 1}: {wall:.1f} s window ({load()})\n"
                    f"  transcoder tree {tx_cpu:.2f} CPU s ({tx_cpu / wall:.3f} cores: "
                    + ", ".join(f"{k} {v / wall:.3f}" for k, v in split.items())
                    + f"; agent in the kernel {agent_sys / wall:.3f})\n"
                    f"  bare ffmpeg     {bare_cpu:.2f} CPU s ({bare_cpu / wall:.3f} cores)\n"
                    + (
                        f"  origin agent    {origin_cpu:.2f} CPU s ({origin_cpu / wall:.3f} cores; not counted)\n"
                        if origin_cpu is not None
                        else ""
                    )
                    + f"  ratio {ratio:.3f}   [old speed-normalised: transcoder speed "
                    f"{tx_speed or float('nan'):.2f}x, bare {b_speed or float('nan'):.2f}x, ratio "
                    f"{old if old is not None else float('nan'):.3f}]",
                    flush=True,
                )
                if not (tx_speed and b_speed and min(tx_speed, b_speed) >= 0.97):
                    # Below real time the two encoded different amounts of media in the window.
                    print("  (not real time on one side: this round's ratio compares unequal work)")
        finally:
            stop_bare(bare)
            tx.put_desired(broadcasting=False)
            tx.stop()
    if ratios:
        print(
            "ratio transcoder tree / bare ffmpeg CPU s, same window: "
            + ", ".join(f"{x:.3f}" for x in ratios)
            + f"; median {statistics.median(ratios):.3f}"
        )
    if old_ratios:
        print(
            "old speed-normalised ratio: "
            + ", ".join(f"{x:.3f}" for x in old_ratios)
            + f"; median {statistics.median(old_ratios):.3f}"
        )
    if args.throughput_seconds > 0:
        throughput = measure_throughput(source, tracks, args.throughput_seconds)
        print(
            f"{len(tracks)}-rung ladder from 1080p30 fed as fast as possible: "
            f"{throughput or float('nan'):.2f}x real time on {__import__('os').cpu_count()} cores ({load()})",
            flush=True,
        )


if __name__ == "__main__":
    main()
