"""Failover gap: main publisher killed (or frozen) -> first backup frame listed in the HLS playlist.

Main publishes red, the backup blue (both 640x360, 1 s GOP) into one nginx-rtmp; the transcoder
agent (360p+240p ladder, CMAF + TS + DASH) publishes to a local dir. Each trial kills (SIGKILL)
or freezes (SIGSTOP) main, then polls the public 360p CMAF playlist every 50 ms and decodes each
new segment until one holds a blue frame: gap = that moment - the kill. Then a fresh main is
published and the trial waits for the switch back. Prints figures, asserts nothing.

    python bench/failover.py [--trials 3] [--segments 2,1]
"""

from __future__ import annotations

import argparse
import time

from _transcoder_common import load, publish_color, rig, stats, wait

from tests.fixtures.transcoder import dominant, frame_colors

import m3u8  # noqa: E402


def blue_listed(out, seen: dict) -> bool:
    rung = out / "hls/cmaf/360p"
    try:
        playlist = m3u8.loads((rung / "index.m3u8").read_text())
    except FileNotFoundError:
        return False
    for segment in playlist.segments:
        if segment.uri not in seen:
            try:
                colors = frame_colors([rung / segment.init_section.uri, rung / segment.uri])
            except Exception:
                return False
            seen[segment.uri] = "blue" in {dominant(c) for c in colors}
        if seen[segment.uri]:
            return True
    return False


def run(segment_seconds: float, trials: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"kill": [], "freeze": [], "status_kill": [], "status_freeze": []}
    with rig("onair-failover-") as r:
        tx = r.transcoders.start(
            main_url=r.rtmp.url("main"),
            backup_url=r.rtmp.url("backup"),
            tracks=["360p", "240p"],
            source_size=(640, 360),
            segment_seconds=segment_seconds,
            preset="veryfast",
        )
        main = publish_color(r.publishers, r.rtmp.url("main"), "red")
        publish_color(r.publishers, r.rtmp.url("backup"), "blue")
        tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main")
        tx.put_desired(phase="live", broadcasting=True)
        tx.wait_file("hls/cmaf/360p/index.m3u8", 60)
        for mode in ("kill", "freeze") * trials:
            time.sleep(4)  # steady state: several main segments
            seen: dict[str, bool] = {}
            blue_listed(tx.out, seen)  # what is already listed (red) does not count
            seen = {uri: False for uri in seen}
            t0 = time.monotonic()
            if mode == "kill":
                main.kill()
            else:
                main.freeze()
            on_air = wait(lambda: tx.status().get("activeSource") == "backup", 15)
            listed = wait(lambda: blue_listed(tx.out, seen), 20)
            if listed is not None:
                results[mode].append(listed - t0)
            if on_air is not None:
                results[f"status_{mode}"].append(on_air - t0)
            main.kill()
            main = publish_color(r.publishers, r.rtmp.url("main"), "red")
            tx.wait_status(lambda s: s.get("activeSource") == "main", 40, "main back")
        tx.put_desired(broadcasting=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--segments", default="2,1")
    args = parser.parse_args()
    for seg in (float(s) for s in args.segments.split(",")):
        print(f"--- {seg:g} s segments ({load()})", flush=True)
        results = run(seg, args.trials)
        print(f"main killed -> backup in playlist:  {stats(results['kill'])}")
        print(f"main frozen -> backup in playlist:  {stats(results['freeze'])}")
        print(f"main killed -> /status says backup: {stats(results['status_kill'])}")
        print(f"main frozen -> /status says backup: {stats(results['status_freeze'])}", flush=True)


if __name__ == "__main__":
    main()
