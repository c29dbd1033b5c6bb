"""Ingest figures: publish -> receiving, publisher loss -> readers/status, WHIP CPU cost.

Runs the real agent (tests.fixtures.ingest) on 127.0.0.1 and prints, per trial:

* publish -> /status receiving, for rtmp, rtmps, srt and whip;
* publisher killed (SIGKILL) -> a reader of read_url (ffmpeg -f null) ends, and -> receiving false;
* publisher frozen (SIGSTOP) -> receiving false, and -> the reader ends (nginx drops it);
* a reader that connects before any publisher: does it get the stream once one arrives;
* CPU (cores) of the agent's process tree while one 640x360@30 WHIP session is re-encoded.

    python bench/ingest.py [--trials 3]

Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from tests.fixtures.ingest import IngestAgentFactory, WhipPublisher  # noqa: E402
from tests.fixtures.media import FFMPEG, PublisherFactory, wait_for  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def reader(url: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", url, "-c", "copy", "-f", "null", "-"],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def receiving(ingest, value: bool, timeout: float = 30) -> float:
    t0 = time.monotonic()
    wait_for(lambda: ingest.status()["receiving"] is value, timeout, interval=0.05, what=f"receiving={value}")
    return time.monotonic() - t0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.2f}s  (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onair-bench-ingest-"))
    agents, pubs = IngestAgentFactory(tmp), PublisherFactory(tmp)
    results: dict[str, list[float]] = {}
    try:
        ingest = agents.start()
        for trial in range(args.trials):
            for protocol in ("rtmp", "rtmps", "srt", "whip"):
                t0 = time.monotonic()
                if protocol == "whip":
                    pub = WhipPublisher(ingest.whip_url, ingest.whip_token, width=640, height=360).start()
                elif protocol == "srt":
                    pub = pubs.srt(ingest.srt_url)
                else:
                    pub = pubs.rtmp(ingest.rtmps_url if protocol == "rtmps" else ingest.rtmp_url)
                wait_for(lambda: ingest.status()["receiving"], 30, interval=0.05, what=f"{protocol} receiving")
                results.setdefault(f"publish -> receiving ({protocol})", []).append(time.monotonic() - t0)
                pub.stop()
                receiving(ingest, False)
                time.sleep(0.5)

            for mode in ("kill", "freeze"):
                pub = pubs.rtmp(ingest.rtmp_url)
                receiving(ingest, True)
                time.sleep(1)
                rd = reader(ingest.read_url, tmp / f"reader-{trial}-{mode}.log")
                time.sleep(2)
                t0 = time.monotonic()
                if mode == "kill":
                    pub.kill()
                else:
                    pub.freeze()
                results.setdefault(f"{mode} -> receiving false", []).append(receiving(ingest, False))
                try:
                    rd.wait(30)
                    results.setdefault(f"{mode} -> reader ends", []).append(time.monotonic() - t0)
                except subprocess.TimeoutExpired:
                    rd.kill()
                    rd.wait()
                if mode == "freeze":
                    pub.thaw()
                    pub.kill()
                wait_for(lambda: ingest.status()["protocol"] is None, 15, what="slot free")

            rd = reader(ingest.read_url, tmp / f"early-reader-{trial}.log")
            time.sleep(1)
            pub = pubs.rtmp(ingest.rtmp_url)
            receiving(ingest, True)
            t0 = time.monotonic()
            got = False
            # The early reader either waits and gets the stream (idle_streams on) or it failed already.
            while time.monotonic() - t0 < 5:
                if rd.poll() is not None:
                    break
                time.sleep(0.2)
            got = rd.poll() is None
            print(
                f"trial {trial}: a reader connected before the publisher {'stays and reads' if got else 'ended early'}"
            )
            pub.stop()
            rd.wait(15)
            receiving(ingest, False)

        client = WhipPublisher(ingest.whip_url, ingest.whip_token, width=640, height=360).start()
        receiving(ingest, True)
        time.sleep(2)
        tree = ingest.process_tree()
        c0, t0 = cpu_seconds(tree), time.monotonic()
        time.sleep(10)
        cores = (cpu_seconds(ingest.process_tree()) - c0) / (time.monotonic() - t0)
        client.stop()
        print(f"WHIP 640x360@30 ingest (aiortc decode + x264 ultrafast + remux + nginx): {cores:.2f} cores")
    finally:
        pubs.close()
        agents.close()
    for name, values in results.items():
        print(f"{name:40s} {fmt(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
