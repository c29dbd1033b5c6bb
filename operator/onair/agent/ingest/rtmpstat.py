"""What nginx-rtmp says about the slot's stream (``rtmp_stat`` XML), and what we make of it.

``parse_stat`` is pure; ``ReceiveMonitor`` turns successive samples into ``receiving`` (bytes
still arriving, so a frozen publisher reads as not receiving long before nginx drops it) and a
bitrate measured over our own window (nginx's bw_in only refreshes every 10 s).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass
from typing import Optional

from onair import endpoints
from onair.api.agent import AudioInfo, VideoInfo
from onair.api.refusals import UNSUPPORTED_CODEC

# What the readers can take as it comes: the transcoder remuxes the RTMP stream into MPEG-TS
# (H.264 video; AAC or MP3 audio) and the recorder copies it into MP4. Names as nginx-rtmp's
# stats spell them, lowercased.
USABLE_VIDEO_CODECS = frozenset({"h264"})
USABLE_AUDIO_CODECS = frozenset({"aac", "mp3"})


@dataclass(frozen=True)
class StreamStat:
    publishing: bool
    client_id: Optional[str]
    client_addr: Optional[str]
    bytes_in: int
    time_ms: int
    video: Optional[VideoInfo]
    audio: Optional[AudioInfo]
    readers: int


def _text(el: Optional[ET.Element], path: str) -> Optional[str]:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _video(meta: Optional[ET.Element]) -> Optional[VideoInfo]:
    video = meta.find("video") if meta is not None else None
    codec = _text(video, "codec")
    if video is None or not codec:
        return None
    fps = _float(_text(video, "frame_rate"))
    return VideoInfo(
        codec=codec.lower(),
        width=_int(_text(video, "width")) or None,
        height=_int(_text(video, "height")) or None,
        fps=fps or None,
    )


def _audio(meta: Optional[ET.Element]) -> Optional[AudioInfo]:
    audio = meta.find("audio") if meta is not None else None
    codec = _text(audio, "codec")
    if audio is None or not codec:
        return None
    return AudioInfo(
        codec=codec.lower(),
        channels=_int(_text(audio, "channels")) or None,
        sample_rate=_int(_text(audio, "sample_rate")) or None,
    )


def parse_stat(
    xml_text: str, app: str = endpoints.RTMP_APP, stream: str = endpoints.INTERNAL_STREAM
) -> Optional[StreamStat]:
    """The named stream of the named application, or None when nginx does not list it."""
    root = ET.fromstring(xml_text)
    for application in root.iter("application"):
        if _text(application, "name") != app:
            continue
        for st in application.iter("stream"):
            if _text(st, "name") != stream:
                continue
            publisher = next((c for c in st.findall("client") if c.find("publishing") is not None), None)
            readers = sum(1 for c in st.findall("client") if c.find("publishing") is None)
            meta = st.find("meta")
            return StreamStat(
                publishing=st.find("publishing") is not None and publisher is not None,
                client_id=_text(publisher, "id"),
                client_addr=_text(publisher, "address"),
                bytes_in=_int(_text(st, "bytes_in")) or 0,
                time_ms=_int(_text(st, "time")) or 0,
                video=_video(meta),
                audio=_audio(meta),
                readers=readers,
            )
    return None


def track_problem(stat: Optional[StreamStat]) -> Optional[tuple[str, str]]:
    """(refusal reason, words) when the publish carries a codec the pipeline cannot use; None
    while nothing is known yet (a missing video track is judged after a grace period instead)."""
    if stat is None:
        return None
    video = stat.video.codec if stat.video else None
    audio = stat.audio.codec if stat.audio else None
    if video and video not in USABLE_VIDEO_CODECS:
        return UNSUPPORTED_CODEC, (
            f"video codec {video} is not supported over RTMP: send H.264 video (with AAC or MP3 audio)"
        )
    if audio and audio not in USABLE_AUDIO_CODECS:
        return UNSUPPORTED_CODEC, (
            f"audio codec {audio} is not supported over RTMP: send AAC (or MP3) audio with the H.264 video"
        )
    return None


def usable(stat: Optional[StreamStat]) -> bool:
    """The publish carries video the pipeline can use (audio is optional)."""
    return stat is not None and stat.video is not None and track_problem(stat) is None


class ReceiveMonitor:
    """Feed it every stat sample; ask it whether media is flowing and at what rate."""

    def __init__(self, stall_seconds: float = 2.0, rate_window_seconds: float = 3.0) -> None:
        self.stall_seconds = stall_seconds
        self.rate_window_seconds = rate_window_seconds
        self._client: Optional[str] = None
        self._samples: deque[tuple[float, int]] = deque()
        self._last_growth: Optional[float] = None
        self._now = 0.0

    def update(self, now: float, stat: Optional[StreamStat]) -> None:
        self._now = now
        if stat is None or not stat.publishing:
            self._reset(None)
            return
        if stat.client_id != self._client or (self._samples and stat.bytes_in < self._samples[-1][1]):
            self._reset(stat.client_id)
        if not self._samples:
            if stat.bytes_in > 0:
                self._last_growth = now
        elif stat.bytes_in > self._samples[-1][1]:
            self._last_growth = now
        self._samples.append((now, stat.bytes_in))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.rate_window_seconds:
            self._samples.popleft()

    def _reset(self, client: Optional[str]) -> None:
        self._client = client
        self._samples.clear()
        self._last_growth = None

    @property
    def receiving(self) -> bool:
        return self._last_growth is not None and self._now - self._last_growth <= self.stall_seconds

    @property
    def stalled_for(self) -> Optional[float]:
        """Seconds since bytes last grew, while a publisher is connected."""
        if self._client is None or self._last_growth is None:
            return None
        return self._now - self._last_growth

    @property
    def bitrate_kbps(self) -> Optional[float]:
        if len(self._samples) < 2:
            return None
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.5:
            return None
        return round((b1 - b0) * 8 / 1000 / (t1 - t0), 1)
