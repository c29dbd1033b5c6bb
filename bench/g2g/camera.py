"""A camera for latency measurements: frames stamped with their capture time (clock.py) at the
moment they are made, in real time, piped to a stock ffmpeg that encodes and pushes them the way
an encoder app does. Glass-to-glass then starts at the stamp, as it would at a camera's sensor.

Below the clock band the picture moves (scrolling diagonal stripes), so the encoder spends real
bits on it, as on camera footage, instead of coasting on a still image.
"""
from __future__ import annotations

import subprocess
import threading
import time
from typing import Optional

from . import clock

# What the encoder does, as its user would set it. "obs": OBS Studio's x264 defaults (veryfast,
# B-frames, its lookahead); "zerolatency": x264's zerolatency tune (no B-frames, no lookahead).
ENCODERS = {
    "obs": ["-preset", "veryfast", "-profile:v", "high"],
    "zerolatency": ["-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high"],
}


def _scene(width: int, height: int) -> bytes:
    """Twice the frame height of diagonal stripes, so a moving window of it is one slice."""
    rows = []
    for y in range(2 * height):
        rows.append(bytes(48 + ((x + y) // 8 % 2) * 96 + (x * 64 // width) for x in range(width)))
    return b"".join(rows)


class Camera:
    def __init__(self, url: str, *, fmt: str = "flv", width: int = 1280, height: int = 720, fps: int = 30,
                 bitrate_kbps: int = 2500, keyframe_seconds: float = 2.0, encoder: str = "obs") -> None:
        self.url, self.fmt = url, fmt
        self.width, self.height, self.fps = width, height, fps
        self.bitrate_kbps, self.keyframe_seconds, self.encoder = bitrate_kbps, keyframe_seconds, encoder
        self.proc: Optional[subprocess.Popen] = None
        self.frames = 0
        self.late_frames = 0  # frames made more than one frame interval late (the machine was busy)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def argv(self) -> list[str]:
        gop = max(1, round(self.fps * self.keyframe_seconds))
        kbps = self.bitrate_kbps
        return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{self.width}x{self.height}",
                "-framerate", str(self.fps), "-i", "-",
                "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                "-c:v", "libx264", *ENCODERS[self.encoder], "-pix_fmt", "yuv420p",
                "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
                "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
                "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-shortest", "-f", self.fmt, self.url]

    def start(self) -> "Camera":
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        scene = _scene(self.width, self.height)
        band = clock.band_height(self.height)
        below = (self.height - band) * self.width
        interval = 1 / self.fps
        start = time.monotonic()
        while not self._stop.is_set():
            due = start + self.frames * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -interval:
                self.late_frames += 1
            offset = (self.frames * 4 % self.height) * self.width
            frame = clock.draw_band(int(time.time() * 1000), self.width, self.height) + scene[offset:offset + below]
            try:
                self.proc.stdin.write(frame)
            except (BrokenPipeError, ValueError):
                return
            self.frames += 1

    def stop(self) -> str:
        """Stops the camera and the encoder; returns what ffmpeg printed on stderr."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        err = b""
        if self.proc is not None:
            try:  # closes ffmpeg's stdin: it finishes the stream and exits
                _, err = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, err = self.proc.communicate()
        return (err or b"").decode(errors="replace")
