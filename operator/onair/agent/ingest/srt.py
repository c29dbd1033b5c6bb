"""SRT ingest: our libsrt listener (``srtlisten``) listens (and keeps listening across callers)
and asks the agent about every caller; an ffmpeg remux forwards what it receives into the slot's
RTMP application as an internal publish.

Why two processes: ffmpeg's own SRT listener exits when its caller leaves and has no per-caller
hook; the listener does not exit, so callers can reconnect at any time, and it lets the agent
choose each caller's passphrase. The bridge is restarted for every SRT session because a new
caller's MPEG-TS timestamps start over.

Callers: ``streamid=publish`` (or none) with the shared ``srtPassphrase``; a member with their
personal publish token ``<header>.<payload>.<signature>`` sends ``streamid=publish:<header>.<payload>``
and the signature as the passphrase (``endpoints.personal_srt_url``): the SRT handshake proves they hold the
token, whose secret part never travels in the clear.
"""
from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from typing import Optional

from onair.endpoints import SRT_PERSONAL_PREFIX

MIN_PASSPHRASE, MAX_PASSPHRASE = 10, 79  # libsrt refuses anything else


def passphrase_problem(passphrase: Optional[str]) -> Optional[str]:
    if not passphrase:
        return "no SRT passphrase is configured (an SRT listener without one would accept anybody)"
    if not MIN_PASSPHRASE <= len(passphrase) <= MAX_PASSPHRASE:
        return (f"the SRT passphrase has {len(passphrase)} characters; "
                f"SRT needs {MIN_PASSPHRASE} to {MAX_PASSPHRASE}")
    return None


def listener_argv(host: str, port: int, latency_ms: int, udp_port: int, ask_url: str,
                  python: Optional[str] = None) -> list[str]:
    """The SRT listener (``onair.agent.ingest.srtlisten``); no secret on its command line: the
    passphrase of each caller comes from the agent's answer at ``ask_url``."""
    return [python or sys.executable, "-m", "onair.agent.ingest.srtlisten", "--host", host, "--port", str(port),
            "--latency-ms", str(latency_ms), "--forward", str(udp_port), "--ask", ask_url]


def personal_claims(streamid: str) -> Optional[str]:
    """``<header>.<payload>`` of a personal publish token in ``streamid=publish:<header>.<payload>``;
    None for any other streamid (the shared passphrase applies)."""
    if not streamid.startswith(SRT_PERSONAL_PREFIX):
        return None
    claims = streamid[len(SRT_PERSONAL_PREFIX):]
    parts = claims.split(".")
    return claims if len(parts) == 2 and all(parts) else None


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
_REJECT = re.compile(r"processConnectRequest: rsp\(REJECT\): (\d+) - (.+)$")
# libsrt logs a rejection as 1000 + its reason: 1010 is a wrong passphrase, and from 2000 up the
# listener's own rejections (the agent said no and recorded why itself).
LOGGED_APPLICATION_REJECT = 2000


def parse_srt_line(line: str) -> Optional[SrtEvent]:
    """The listener's lines the agent acts on; everything else is noise."""
    if "Accepted SRT source connection" in line:
        return SrtEvent("connected")
    if "SRT source disconnected" in line:
        return SrtEvent("disconnected")
    m = _REJECT.search(line)
    if m:
        return None if int(m.group(1)) >= LOGGED_APPLICATION_REJECT else SrtEvent("rejected", m.group(2).strip())
    m = _PEER.search(line)
    if m:
        return SrtEvent("peer", m.group(1))
    if line.strip() == "listen...":
        return SrtEvent("listening")
    return None
