"""WHEP viewers per core: what each WebRTC viewer costs the transcoder that forwards to it.

An RTMP server gets a pre-encoded 720p30 clip (publishing costs no encoding); a real transcoder
agent with WHEP on encodes the ladder and the WebRTC rendition once. Then 0, 1, 10 and 50 viewers
(aiortc clients in a separate process, bounded in count and time, that receive and count RTP packets but
do not decode, so the machine's two cores are not spent on their decoders) play it, and the
transcoder agent's own CPU (utime + stime of the agent process: aiortc packetizing, SRTP, UDP; not
its ffmpeg children, whose number is printed and must not change) is measured over a window at
each count. Per viewer: (CPU at N - CPU at 0) / N; viewers per core: its inverse.

    python3 bench/whep_viewers.py [--viewers 1,10,50] [--seconds 15] [--tracks 720p,360p]

Prints figures, asserts nothing; stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
from bench._transcoder_common import clip, cpu_seconds, load, publish_clip, rig, tagged_pids  # noqa: E402

HERE = Path(__file__).resolve()


# ----------------------------------------------------------------------------- viewer process
def no_decoding() -> None:
    """aiortc decodes every received frame in a thread per track; these viewers only count packets."""
    import aiortc.rtcrtpreceiver as receiver

    class Discard:
        def decode(self, encoded_frame):
            return []

    receiver.get_decoder = lambda codec: Discard()


async def viewers_main(url: str, token: str, count: int, seconds: float) -> None:
    from tests.fixtures.whep import WhepViewer, loopback_ice

    loopback_ice()
    no_decoding()
    headers = {"Authorization": f"Bearer {token}"}
    viewers = []
    try:
        # Ten offers at a time: each session's ICE and DTLS handshakes cost both sides CPU once.
        for start in range(0, count, 10):
            opened = await asyncio.gather(
                *(WhepViewer.open(url, headers=headers) for _ in range(min(10, count - start))), return_exceptions=True
            )
            viewers += [v for v in opened if isinstance(v, WhepViewer)]
            for failure in (v for v in opened if not isinstance(v, WhepViewer)):
                print(f"viewer failed: {failure!r}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 120
        while any(v.pc.connectionState != "connected" for v in viewers) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        print(json.dumps({"ready": sum(v.pc.connectionState == "connected" for v in viewers)}), flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.5)
        received = []
        for v in viewers:
            stats = await v.pc.getStats()
            received.append(sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp"))
        print(json.dumps({"packets": received}), flush=True)
    finally:
        await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)


# ----------------------------------------------------------------------------- the measurement
def read_json(proc: subprocess.Popen, key: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the viewers' process ended (code {proc.poll()})")
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if key in data:
            return data
    raise TimeoutError(f"no {key!r} from the viewers' process in {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=15, help="CPU window per viewer count")
    parser.add_argument("--tracks", default="720p,360p", help="the ladder; WebRTC takes the largest rung up to 720p")
    parser.add_argument(
        "--viewer-process", nargs=4, metavar=("URL", "TOKEN", "COUNT", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.viewer_process:
        url, token, count, seconds = args.viewer_process
        asyncio.run(viewers_main(url, token, int(count), float(seconds)))
        return
    counts = [int(n) for n in args.viewers.split(",")]
    if max(counts) > 100:
        raise SystemExit("at most 100 viewers: this is one machine")
    tracks = args.tracks.split(",")
    source = clip(1280, 720)
    with rig("onair-whep-bench-") as r:
        url = r.rtmp.url("main")
        publish_clip(r.publishers, source, url)
        time.sleep(2)
        tx = r.transcoders.start(
            main_url=url,
            tracks=tracks,
            source_size=(1280, 720),
            preset="veryfast",
            whep=True,
            whep_ice_addresses=["127.0.0.1"],
            whep_max_viewers=max(counts) + 1,
        )
        tx.wait_status(lambda s: s.get("activeSource") == "main", 40, "main")
        tx.put_desired(phase="live", broadcasting=True)
        tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
        time.sleep(3)
        agent = tx.proc.pid
        whep_url = f"{tx.url}/whep"
        rows = []

        def window(n: int) -> dict:
            ffmpegs = len(tx.pids("ffmpeg"))
            t0, c0 = time.monotonic(), cpu_seconds([agent])
            time.sleep(args.seconds)
            cpu = (cpu_seconds([agent]) - c0) / (time.monotonic() - t0)
            return {"viewers": n, "cpu": cpu, "ffmpeg": ffmpegs, "speed": tx.status().get("speed")}

        rows.append(window(0))
        print(f"0 viewers: agent CPU {rows[0]['cpu'] * 100:.1f}% of a core", flush=True)
        viewer_log = open(r.tmp / "viewers.log", "a")
        for n in counts:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE),
                    "--viewer-process",
                    whep_url,
                    tx.agent_token or "",
                    str(n),
                    str(args.seconds + 3),
                ],
                stdout=subprocess.PIPE,
                stderr=viewer_log,
                text=True,
                start_new_session=True,
            )
            try:
                ready = read_json(proc, "ready", 240)["ready"]
                time.sleep(2)  # past the keyframe wait and the first bursts
                row = window(n)
                row["ready"] = ready
                received = read_json(proc, "packets", 60)["packets"]
                row["pps"] = min(received) / (args.seconds + 3) if received else 0
                proc.wait(timeout=30)
            except Exception:
                viewer_log.flush()
                print((r.tmp / "viewers.log").read_text()[-3000:], file=sys.stderr)
                raise
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            rows.append(row)
            print(
                f"{n} viewers: agent CPU {row['cpu'] * 100:.1f}% of a core ({ready} connected, the slowest received "
                f"{row['pps']:.0f} RTP packets/s, {row['ffmpeg']} ffmpeg processes)",
                flush=True,
            )
            time.sleep(2)  # the sessions' DELETEs and closes settle
        base = rows[0]["cpu"]
        print(
            f"\nWHEP viewers per core: transcoder agent (aiortc) CPU, ladder {tracks} + WebRTC rendition from a "
            f"1280x720@30 source, {args.seconds:.0f} s windows; {load()}"
        )
        print(
            f"{'viewers':>8} {'agent CPU':>10} {'per viewer':>11} {'viewers/core':>13} {'pkt/s each':>10} {'ffmpeg':>7} "
            f"{'speed':>6}"
        )
        for row in rows:
            n = row["viewers"]
            per = (row["cpu"] - base) / n if n else None
            per_core = (1 / per if per and per > 0 else float("inf")) if n else None
            print(
                f"{n:>8} {row['cpu'] * 100:>9.1f}% {'' if per is None else f'{per * 100:.2f}%':>11} "
                f"{'' if per_core is None else f'{per_core:.0f}':>13} {row.get('pps', 0):>10.0f} "
                f"{row['ffmpeg']:>7} {row['speed'] or 0:>6.2f}"
            )
        full = max((row.get("pps", 0) for row in rows), default=0)
        starved = [row["viewers"] for row in rows if row["viewers"] and row.get("pps", 0) < 0.9 * full]
        if starved or any((row["speed"] or 0) < 0.95 for row in rows):
            print(
                f"NOT VALID: the encoder fell behind real time or viewers got less than the stream (at {starved}): "
                "the machine is too busy; measure again when it is quieter"
            )
        tagged = len(tagged_pids(tx.tag))
        print(f"(processes of the transcoder at the end: {tagged}, the agent and its ffmpegs)")


if __name__ == "__main__":
    main()
