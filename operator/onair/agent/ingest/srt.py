"""SRT ingest: srt-live-transmit listens (and keeps listening across callers), an ffmpeg remux
forwards what it receives into the slot's RTMP application as an internal publish.

Why two processes: ffmpeg's own SRT listener exits when its caller leaves, srt-live-transmit
does not, so callers can reconnect at any time. The bridge is restarted for every SRT session
because a new caller's MPEG-TS timestamps start over.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

MIN_PASSPHRASE, MAX_PASSPHRASE = 10, 79  # libsrt refuses anything else


def passphrase_problem(passphrase: Optional[str]) -> Optional[str]:
    if not passphrase:
        return "no SRT passphrase is configured (an SRT listener without one would accept anybody)"
    if not MIN_PASSPHRASE <= len(passphrase) <= MAX_PASSPHRASE:
        return (f"the SRT passphrase has {len(passphrase)} characters; "
                f"SRT needs {MIN_PASSPHRASE} to {MAX_PASSPHRASE}")
    return None


def listener_uri(host: str, port: int, passphrase: str, latency_ms: int) -> str:
    host = "" if host in ("0.0.0.0", "*") else host
    return (f"srt://{host}:{port}?mode=listener&passphrase={quote(passphrase, safe='')}"
            f"&latency={latency_ms}&transtype=live")


def srt_live_transmit_argv(host: str, port: int, passphrase: str, latency_ms: int, udp_port: int,
                           binary: Optional[str] = None) -> list[str]:
    # -v prints "Accepted SRT source connection" / "SRT source disconnected"; note level adds the
    # caller's address and the reason of a rejected handshake.
    return [binary or shutil.which("srt-live-transmit") or "srt-live-transmit", "-v", "-ll:note",
            "-a:yes", listener_uri(host, port, passphrase, latency_ms), f"udp://127.0.0.1:{udp_port}"]


# What FLV (RTMP) carries and the readers take as it comes (see rtmpstat.USABLE_*), in ffmpeg's
# codec names. Anything else an SRT caller sends is converted by the bridge.
COPYABLE_VIDEO = frozenset({"h264"})
COPYABLE_AUDIO = frozenset({"aac", "mp3"})
# Converted video: x264 as cheap as the WHIP path (ultrafast/zerolatency), at a quality the
# transcoder can work from, capped like the WHIP encoder; 8-bit 4:2:0 because HEVC Main10 would
# become High10 H.264, which few decoders play. Keyframes stay where the encoder put them.
CONVERT_VIDEO = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
                 "-crf", "20", "-maxrate", "8M", "-bufsize", "16M", "-force_key_frames", "source"]
CONVERT_AUDIO = ["-c:a", "aac", "-b:a", "160k", "-ac", "2"]


def bridge_argv(udp_port: int, rtmp_url: str, binary: Optional[str] = None, convert_video: bool = False,
                convert_audio: bool = False) -> list[str]:
    source = (f"udp://127.0.0.1:{udp_port}?fifo_size=1000000&overrun_nonfatal=1&buffer_size=4194304")
    return [binary or shutil.which("ffmpeg") or "ffmpeg", "-hide_banner", "-nostdin", "-nostats",
            # info: the input's codecs (parse_bridge_line) are only printed at this level.
            "-loglevel", "info",
            # MPEG-TS may add streams later, so ffmpeg probes for the whole analyzeduration: keep
            # it short, encoders start audio and video together.
            "-analyzeduration", "1000000", "-probesize", "1000000", "-i", source,
            "-map", "0:v:0?", "-map", "0:a:0?",
            *(CONVERT_VIDEO if convert_video else ["-c:v", "copy"]),
            *(CONVERT_AUDIO if convert_audio else ["-c:a", "copy"]),
            "-f", "flv", "-flvflags", "no_duration_filesize", rtmp_url]


@dataclass(frozen=True)
class BridgeEvent:
    kind: str  # input (video, audio: the codecs the caller sends, None when absent) | undecodable
    video: Optional[str] = None
    audio: Optional[str] = None
    detail: str = ""


_STREAM = re.compile(r"^\s+Stream #0:\d+\S*: (Video|Audio): ([\w-]+)")
_NO_DECODER = re.compile(r"Decoder \(codec ([\w-]+)\) not found for input stream #0:(\d+)")


class BridgeLog:
    """Reads one bridge's stderr: the codecs of its input (ffmpeg's dump of ``Input #0``) and a
    codec it has no decoder for. Feed it every line; ``reset()`` when a new process starts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._in_input = False
        self._video: Optional[str] = None
        self._audio: Optional[str] = None

    def feed(self, line: str) -> Optional[BridgeEvent]:
        if line.startswith("Input #0"):
            self._in_input, self._video, self._audio = True, None, None
            return None
        if self._in_input:
            if line[:1].isspace():
                m = _STREAM.match(line)
                if m and m.group(1) == "Video" and self._video is None:
                    self._video = m.group(2)
                elif m and m.group(1) == "Audio" and self._audio is None:
                    self._audio = m.group(2)
                return None
            self._in_input = False  # the dump ends at the first line that is not indented
            event = BridgeEvent("input", self._video, self._audio)
            follow = self.feed(line)
            return follow or event
        m = _NO_DECODER.search(line)
        if m:
            return BridgeEvent("undecodable", detail=m.group(1))
        return None


def conversions(video: Optional[str], audio: Optional[str]) -> tuple[bool, bool]:
    """(convert video, convert audio) for a caller's codecs; absent tracks need nothing."""
    return (video is not None and video not in COPYABLE_VIDEO, audio is not None and audio not in COPYABLE_AUDIO)


@dataclass(frozen=True)
class SrtEvent:
    kind: str  # connected | disconnected | rejected | peer | listening
    detail: str = ""


_PEER = re.compile(r"PASSING request from: (\S+)")
_REJECT = re.compile(r"processConnectRequest: rsp\(REJECT\): \d+ - (.+)$")


def parse_srt_line(line: str) -> Optional[SrtEvent]:
    """The srt-live-transmit lines the agent acts on; everything else is noise."""
    if "Accepted SRT source connection" in line:
        return SrtEvent("connected")
    if "SRT source disconnected" in line:
        return SrtEvent("disconnected")
    m = _REJECT.search(line)
    if m:
        return SrtEvent("rejected", m.group(1).strip())
    m = _PEER.search(line)
    if m:
        return SrtEvent("peer", m.group(1))
    if line.strip() == "listen...":
        return SrtEvent("listening")
    return None
