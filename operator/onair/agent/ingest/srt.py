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


def bridge_argv(udp_port: int, rtmp_url: str, binary: Optional[str] = None) -> list[str]:
    source = (f"udp://127.0.0.1:{udp_port}?fifo_size=1000000&overrun_nonfatal=1&buffer_size=4194304")
    return [binary or shutil.which("ffmpeg") or "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
            # MPEG-TS may add streams later, so ffmpeg probes for the whole analyzeduration: keep
            # it short, encoders start audio and video together.
            "-analyzeduration", "1000000", "-probesize", "1000000", "-i", source,
            "-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy",
            "-f", "flv", "-flvflags", "no_duration_filesize", rtmp_url]


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
