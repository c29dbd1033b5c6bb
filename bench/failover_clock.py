"""Failover as viewers see it, frame by frame: content repeated or skipped at the switch and the
latency before/after, read from the clock painted in every frame of the output.

Two cameras paint the same clock (one camera feeding two encoders, OBS x264 settings, 2 s GOP) into
main and backup (320x180@30, one nginx-rtmp); the transcoder agent splices them into its 180p CMAF
rendition. Each trial kills main's encoder late in the backup's GOP (its cached keyframe then holds
picture viewers already saw), lets a new main come back and take over, then decodes every frame
of the output (bench/g2g/splice.py). Prints figures, asserts nothing.

    python3 bench/failover_clock.py [--trials 3] [--kill-frames-before-key 12] [--runtime agent|dev]

``--runtime dev`` runs the product instead, as the issue did: `onair dev` (process runner), callType
``livestream`` with the backup ingest, the cameras (640x360) pushing RTMP to the URLs it prints,
and the output read over HTTP from ``status.playback.hlsCmaf`` (its top rendition). The switch
moments are then estimated from the kill and the restart (the agents' logs are not at hand).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Optional
from urllib.parse import urljoin

import m3u8
from _transcoder_common import load, rig

from bench.g2g.camera import Camera
from bench.g2g.splice import PlaylistRecording, SwitchFigures, failover_and_return, read_frames, switch_figures
from bench.waiting import wait_until

RUNG = "180p"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


class HttpRecording(PlaylistRecording):
    """Every segment of the top rendition of an HLS CMAF master playlist, fetched as listed."""

    def __init__(self, master: str) -> None:
        super().__init__(Path())
        self.master = master
        self.variant: Optional[str] = None
        self.size = (0, 0)

    def poll(self) -> int:
        try:
            if self.variant is None:
                top = max(m3u8.loads(_get(self.master).decode()).playlists, key=lambda p: p.stream_info.bandwidth)
                self.variant = urljoin(self.master, top.uri)
                self.size = top.stream_info.resolution
            playlist = m3u8.loads(_get(self.variant).decode())
            for segment in playlist.segments:
                if segment.uri not in self.segments:
                    self.init = self.init or _get(urljoin(self.variant, segment.init_section.uri))
                    self.segments[segment.uri] = _get(urljoin(self.variant, segment.uri))
        except OSError:
            pass
        return len(self.segments)


def dev_trial(dev, trial: int, kill_frames_before_key: int) -> dict[str, SwitchFigures]:
    from kubernetes import client

    group, version, ns, name = "onair.dev", "v1alpha1", "failover", f"clock-{trial}"
    core, custom = client.CoreV1Api(dev.api), client.CustomObjectsApi(dev.api)
    if trial == 0:
        core.create_namespace({"metadata": {"name": ns}})
    custom.create_namespaced_custom_object(
        group,
        version,
        ns,
        "livestreams",
        {
            "apiVersion": f"{group}/{version}",
            "kind": "Livestream",
            "metadata": {"name": name},
            "spec": {"callType": "livestream", "phase": "live", "settingsOverride": {"ingest": {"backup": True}}},
        },
    )

    def status() -> dict:
        return custom.get_namespaced_custom_object(group, version, ns, "livestreams", name).get("status") or {}

    urls = wait_until(
        lambda: (e := dev.endpoints(ns, name))["ingest"].get("backupRtmp") and e["playback"].get("hlsCmaf") and e,
        240,
        "push and playback URLs",
    )
    key = base64.b64decode(core.read_namespaced_secret(f"{name}-credentials", ns).data["streamKey"]).decode()

    def camera(url: str) -> Camera:
        return Camera(
            f"{url}/{key}", width=640, height=360, fps=30, bitrate_kbps=1000, keyframe_seconds=2.0, encoder="obs"
        ).start()

    main, backup = camera(urls["ingest"]["rtmp"]), camera(urls["ingest"]["backupRtmp"])
    recording = HttpRecording(urls["playback"]["hlsCmaf"])
    try:
        wait_until(
            lambda: status().get("activeSource") == "main" and status().get("backupLive"),
            120,
            "main on air with the backup live",
        )
        wait_until(recording.poll, 60, "the first segment")
        recording.keep_for(10)
        gop = 60
        wait_until(lambda: backup.frames % gop == gop - kill_frames_before_key, 10, "the backup late in its GOP", 0.005)
        assert main.proc is not None
        main.proc.kill()
        killed_ms = time.time() * 1000
        recording.keep_for(15)
        main.stop()
        main = camera(urls["ingest"]["rtmp"])
        back_ms = time.time() * 1000
        recording.keep_for(22)
    finally:
        main.stop()
        backup.stop()
        custom.delete_namespaced_custom_object(group, version, ns, "livestreams", name)
    width, height = recording.size
    frames = read_frames(recording.init + b"".join(recording.segments.values()), width, height)
    # The return: main healthy (its reader back, a keyframe), its 3 s hysteresis, its next keyframe.
    return {
        "main -> backup": switch_figures(frames, killed_ms),
        "backup -> main": switch_figures(frames, back_ms + 5000, settle_ms=8000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--kill-frames-before-key", type=int, default=12)
    parser.add_argument("--runtime", choices=("agent", "dev"), default="agent")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        dev = None
        if args.runtime == "dev":
            from bench._onair_dev import OnairDev

            dev = stack.enter_context(OnairDev())
        run(args, dev)


def run(args: argparse.Namespace, dev) -> None:
    results: dict[str, list[SwitchFigures]] = {}
    for trial in range(args.trials):
        if dev is not None:
            figures = dev_trial(dev, trial, args.kill_frames_before_key)
        else:
            with rig("onair-failover-clock-") as r:
                tx = r.transcoders.start(
                    main_url=r.rtmp.url("main"),
                    backup_url=r.rtmp.url("backup"),
                    tracks=[RUNG],
                    source_size=(320, 180),
                    hls_mpegts=False,
                    dash=False,
                    screenshot_interval_seconds=0,
                    segment_seconds=1.0,
                    return_seconds=2.0,
                )
                figures = failover_and_return(
                    tx, r.rtmp.url, RUNG, width=320, height=180, kill_frames_before_key=args.kill_frames_before_key
                )
        for switch, f in figures.items():
            results.setdefault(switch, []).append(f)
            print(f"trial {trial + 1} {switch}: {f} ({load()})", flush=True)
    print(
        f"python3 bench/failover_clock.py --runtime {args.runtime} --trials {args.trials} "
        f"--kill-frames-before-key {args.kill_frames_before_key}"
    )
    for switch, runs in results.items():

        def med(key: str) -> float:
            return statistics.median(getattr(f, key) for f in runs)

        print(
            f"{switch}: median of {len(runs)}: repeated {med('repeat_ms'):.0f} ms, skipped {med('skip_ms'):.0f} ms, "
            f"latency after - before {med('latency_shift_ms'):+.0f} ms"
        )


if __name__ == "__main__":
    main()
