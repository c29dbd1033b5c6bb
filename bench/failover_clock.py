"""Failover as viewers see it, frame by frame: content repeated or skipped at the switch and the
latency before/after, read from the clock painted in every frame of the output.

Two cameras paint the same clock (one camera feeding two encoders, OBS x264 settings, 2 s GOP) into
main and backup (320x180@30, one nginx-rtmp); the transcoder agent splices them into its 180p CMAF
rendition. Each trial kills main's encoder late in the backup's GOP (its cached keyframe then holds
picture viewers already saw), lets a new main come back and take over, then decodes every frame
of the output (bench/g2g/splice.py). Prints figures, asserts nothing.

    python3 bench/failover_clock.py [--trials 3] [--kill-frames-before-key 12]
"""
from __future__ import annotations

import argparse
import statistics

from _transcoder_common import load, rig

from bench.g2g.splice import SwitchFigures, failover_and_return

RUNG = "180p"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--kill-frames-before-key", type=int, default=12)
    args = parser.parse_args()
    results: dict[str, list[SwitchFigures]] = {}
    for trial in range(args.trials):
        with rig("onair-failover-clock-") as r:
            tx = r.transcoders.start(main_url=r.rtmp.url("main"), backup_url=r.rtmp.url("backup"), tracks=[RUNG],
                                     source_size=(320, 180), hls_mpegts=False, dash=False,
                                     screenshot_interval_seconds=0, segment_seconds=1.0, return_seconds=2.0)
            figures = failover_and_return(tx, r.rtmp.url, RUNG, width=320, height=180,
                                          kill_frames_before_key=args.kill_frames_before_key)
        for switch, f in figures.items():
            results.setdefault(switch, []).append(f)
            print(f"trial {trial + 1} {switch}: {f} ({load()})", flush=True)
    for switch, runs in results.items():
        def med(key: str) -> float:
            return statistics.median(getattr(f, key) for f in runs)
        print(f"{switch}: median of {len(runs)}: repeated {med('repeat_ms'):.0f} ms, skipped {med('skip_ms'):.0f} ms, "
              f"latency after - before {med('latency_shift_ms'):+.0f} ms")


if __name__ == "__main__":
    main()
