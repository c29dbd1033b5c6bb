"""What ffmpeg says on stderr, as numbers: encoder speed (Gcore's ``transcoding_speed``) and the
size/rate of a reader's input (the ladder is fitted to it)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_SPEED = re.compile(r"(?:^|\s)speed=\s*([0-9]+(?:\.[0-9]+)?)x")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+)(?P<rest>.*)$")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (?P<codec>\w+)")
_SIZE = re.compile(r"(?:,|\s)(?P<w>[1-9][0-9]{1,4})x(?P<h>[1-9][0-9]{1,4})(?=[\s,\[]|$)")
_FPS = re.compile(r"(?P<fps>[0-9]+(?:\.[0-9]+)?)(?P<k>k?) fps")
_TBR = re.compile(r"(?P<fps>[0-9]+(?:\.[0-9]+)?)(?P<k>k?) tbr")


def parse_speed(line: str) -> Optional[float]:
    """``speed=1.01x`` from a stats line or a ``-progress`` line; None for ``speed=N/A``."""
    match = _SPEED.search(line)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class InputVideo:
    codec: str
    width: int
    height: int
    fps: Optional[float]


def parse_video_stream(line: str) -> Optional[InputVideo]:
    """``Stream #0:1: Video: h264 (High), yuv420p(progressive), 1920x1080 [SAR 1:1 DAR 16:9], 30 fps``."""
    match = _VIDEO.search(line)
    if not match:
        return None
    rest = match.group("rest")
    size = _SIZE.search(rest)
    if not size:
        return None
    fps = None
    for pattern in (_FPS, _TBR):
        rate = pattern.search(rest)
        if rate:
            fps = float(rate.group("fps")) * (1000 if rate.group("k") else 1)
            break
    return InputVideo(match.group("codec"), int(size.group("w")), int(size.group("h")), fps)


class InputProbe:
    """Follows a reader's stderr and keeps what its *input* carries (not its output)."""

    def __init__(self) -> None:
        self.video: Optional[InputVideo] = None
        self.audio_codec: Optional[str] = None
        self._section: Optional[str] = None

    def reset(self) -> None:
        self.__init__()

    def feed(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith("Input #"):
            self._section = "input"
            return
        if stripped.startswith("Output #") or stripped.startswith("Stream mapping"):
            self._section = "output"
            return
        if self._section != "input":
            return
        video = parse_video_stream(stripped)
        if video and self.video is None:
            self.video = video
            return
        audio = _AUDIO.search(stripped)
        if audio and self.audio_codec is None:
            self.audio_codec = audio.group("codec")
