"""The ingest's SRT listener: libsrt through ctypes, asking the agent about every caller.

    python3 -m onair.agent.ingest.srtlisten --port 9998 --latency-ms 2000 --forward 40001 \\
        --ask http://127.0.0.1:8080/internal/srt/caller      # bearer token in $ONAIR_SRT_ASK_TOKEN

Why not srt-live-transmit: it has one passphrase for every caller and no hook to look at a caller
before the handshake completes, so a member's personal publish token cannot be checked there.
libsrt itself has that hook, ``srt_listen_callback``: it sees the caller's ``streamid`` during the
handshake, may reject it with a reason code the caller sees, and may set a passphrase for that one
connection. Why ctypes: no maintained Python binding of libsrt exists on PyPI (the ``srt``
packages there parse subtitles), while Debian's ``libsrt1.5-gnutls`` is already in the image
(srt-tools and ffmpeg depend on it); the handful of calls below are libsrt's stable C API (1.4+).

What the agent answers (``POST --ask``, JSON ``{"streamid", "peer", "busy"}``):
``{"accept": true, "passphrase": "..."}`` sets that passphrase for the connection (the shared
``srtPassphrase``, or for ``streamid=publish:<header>.<payload>`` the signature of the member's
personal publish token, so the secret part of the token never travels in the clear and the SRT
handshake itself proves the caller holds it); ``{"accept": false, "code": 1403}`` rejects the
caller with that SRT reject code. The agent records its own refusals.

Output, one line per event, as srt-live-transmit's that the agent already reads
(``srt.parse_srt_line``): ``listen...``, ``PASSING request from: <host:port>``, ``Accepted SRT
source connection``, ``SRT source disconnected`` and libsrt's own note-level log (which carries
``rsp(REJECT)`` lines for a failed handshake, such as a wrong passphrase). Received MPEG-TS goes to
``udp://127.0.0.1:<forward>`` (the ffmpeg bridge). One caller at a time: a second one is asked
about with ``busy: true`` and rejected.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import secrets
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from typing import Optional

LIBRARY_NAMES = ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5", "libsrt-gnutls.so.1", "libsrt.so.1")
ASK_TOKEN_ENV = "ONAIR_SRT_ASK_TOKEN"

# srt.h (libsrt 1.5)
SRTO_RCVSYN = 2
SRTO_RCVTIMEO = 14
SRTO_LATENCY = 23
SRTO_PASSPHRASE = 26
SRT_REJC_PREDEFINED = 1000
LOG_NOTICE = 5
SRT_ERROR = -1
RECV_TIMEOUT_MS = 1000
MAX_PAYLOAD = 1456

LISTEN_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)
LOG_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p
)


class SrtError(RuntimeError):
    pass


def load_library() -> ctypes.CDLL:
    names = list(LIBRARY_NAMES)
    found = ctypes.util.find_library("srt-gnutls") or ctypes.util.find_library("srt")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        _declare(lib)
        return lib
    raise SrtError(f"libsrt not found (tried {', '.join(names)}): install Debian's libsrt1.5-gnutls")


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    signatures = {
        "srt_startup": ([], c_int),
        "srt_cleanup": ([], c_int),
        "srt_create_socket": ([], c_int),
        "srt_setsockflag": ([c_int, c_int, c_void_p, c_int], c_int),
        "srt_bind": ([c_int, c_void_p, c_int], c_int),
        "srt_listen": ([c_int, c_int], c_int),
        "srt_listen_callback": ([c_int, LISTEN_CALLBACK, c_void_p], c_int),
        "srt_accept": ([c_int, c_void_p, ctypes.POINTER(c_int)], c_int),
        "srt_recvmsg": ([c_int, c_char_p, c_int], c_int),
        "srt_close": ([c_int], c_int),
        "srt_getlasterror_str": ([], c_char_p),
        "srt_setrejectreason": ([c_int, c_int], c_int),
        "srt_setloglevel": ([c_int], None),
        "srt_setloghandler": ([c_void_p, LOG_HANDLER], None),
    }
    for name, (args, result) in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = args, result


def peer_address(addr: Optional[int]) -> str:
    """``host:port`` of a ``struct sockaddr*`` (IPv4 or IPv6), as srt-live-transmit prints it."""
    if not addr:
        return "unknown"
    family = ctypes.c_ushort.from_address(addr).value
    if family == socket.AF_INET:
        raw = ctypes.string_at(addr, 16)
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{int.from_bytes(raw[2:4], 'big')}"
    if family == socket.AF_INET6:
        raw = ctypes.string_at(addr, 28)
        return f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{int.from_bytes(raw[2:4], 'big')}"
    return "unknown"


def sockaddr(host: str, port: int) -> tuple[ctypes.Array, int]:
    """A ``struct sockaddr_in``/``sockaddr_in6`` for ``bind``."""
    host = host if host not in ("", "*") else "0.0.0.0"
    if ":" in host:
        raw = (
            socket.AF_INET6.to_bytes(2, sys.byteorder)
            + port.to_bytes(2, "big")
            + b"\0" * 4
            + socket.inet_pton(socket.AF_INET6, host)
            + b"\0" * 4
        )
    else:
        raw = (
            socket.AF_INET.to_bytes(2, sys.byteorder)
            + port.to_bytes(2, "big")
            + socket.inet_pton(socket.AF_INET, host)
            + b"\0" * 8
        )
    return ctypes.create_string_buffer(raw, len(raw)), len(raw)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Listener:
    def __init__(
        self, lib: ctypes.CDLL, host: str, port: int, latency_ms: int, forward_port: int, ask_url: str, ask_token: str
    ) -> None:
        self.lib, self.host, self.port = lib, host, port
        self.latency_ms, self.ask_url, self.ask_token = latency_ms, ask_url, ask_token
        self.forward = ("127.0.0.1", forward_port)
        self.busy = threading.Event()
        # ctypes callbacks must outlive every call libsrt makes to them.
        self._on_caller = LISTEN_CALLBACK(self._caller)
        self._on_log = LOG_HANDLER(self._log)
        self.socket = SRT_ERROR

    def _check(self, result: int, what: str) -> int:
        if result == SRT_ERROR:
            raise SrtError(f"{what}: {self.lib.srt_getlasterror_str().decode(errors='replace')}")
        return result

    def _flag(self, sock: int, option: int, value) -> int:
        if isinstance(value, bytes):
            return self.lib.srt_setsockflag(sock, option, value, len(value))
        number = ctypes.c_int(int(value))
        return self.lib.srt_setsockflag(sock, option, ctypes.byref(number), ctypes.sizeof(number))

    # libsrt calls these from its own threads ------------------------------------------------
    def _log(self, opaque, level, file, line, area, message) -> None:
        text = (message or b"").decode(errors="replace").strip()
        if text:
            say(text)

    def _caller(self, opaque, ns: int, hsversion: int, peer: Optional[int], streamid: Optional[bytes]) -> int:
        # An exception escaping a ctypes callback would return 0, "let the caller in": never.
        try:
            return self._decide(ns, peer_address(peer), (streamid or b"").decode("utf-8", "replace"))
        except BaseException as exc:  # noqa: BLE001
            say(f"refusing a caller: {type(exc).__name__}: {exc}")
            return -1

    def _decide(self, ns: int, address: str, streamid: str) -> int:
        say(f"PASSING request from: {address}")
        try:
            answer = self.ask(streamid, address)
        except Exception as exc:  # the agent is away: nobody gets in
            say(f"cannot ask the agent about the caller {address}: {exc}")
            answer = {"accept": False, "code": SRT_REJC_PREDEFINED + 503}
        passphrase = str(answer.get("passphrase") or "").encode()
        if answer.get("accept") and passphrase and self._flag(ns, SRTO_PASSPHRASE, passphrase) != SRT_ERROR:
            return 0
        self.lib.srt_setrejectreason(ns, int(answer.get("code") or SRT_REJC_PREDEFINED + 403))
        return -1

    def ask(self, streamid: str, peer: str) -> dict:
        body = json.dumps({"streamid": streamid[:512], "peer": peer, "busy": self.busy.is_set()}).encode()
        request = urllib.request.Request(
            self.ask_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.ask_token}"},
        )
        with urllib.request.urlopen(request, timeout=3) as response:
            return json.loads(response.read())

    # the main thread ------------------------------------------------------------------------
    def open(self) -> None:
        lib = self.lib
        self._check(lib.srt_startup(), "srt_startup")
        lib.srt_setloglevel(LOG_NOTICE)
        lib.srt_setloghandler(None, self._on_log)
        self.socket = self._check(lib.srt_create_socket(), "srt_create_socket")
        self._check(self._flag(self.socket, SRTO_RCVSYN, 1), "SRTO_RCVSYN")
        self._check(self._flag(self.socket, SRTO_LATENCY, self.latency_ms), "SRTO_LATENCY")
        # Accepted sockets inherit the listener's passphrase: a random one nobody knows, so a caller
        # whose own passphrase was somehow not set by the callback can never complete the handshake.
        self._check(self._flag(self.socket, SRTO_PASSPHRASE, secrets.token_urlsafe(32).encode()), "SRTO_PASSPHRASE")
        address, length = sockaddr(self.host, self.port)
        self._check(lib.srt_bind(self.socket, address, length), f"bind {self.host}:{self.port}/udp")
        self._check(lib.srt_listen_callback(self.socket, self._on_caller, None), "srt_listen_callback")
        self._check(lib.srt_listen(self.socket, 1), "srt_listen")
        say("listen...")

    def serve(self) -> None:
        lib = self.lib
        forward = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        buffer = ctypes.create_string_buffer(MAX_PAYLOAD)
        while True:
            length = ctypes.c_int(128)
            peer = ctypes.create_string_buffer(128)
            caller = lib.srt_accept(self.socket, peer, ctypes.byref(length))
            if caller == SRT_ERROR:
                raise SrtError(f"srt_accept: {lib.srt_getlasterror_str().decode(errors='replace')}")
            self.busy.set()
            say("Accepted SRT source connection")
            self._flag(caller, SRTO_RCVTIMEO, RECV_TIMEOUT_MS)
            try:
                while True:
                    received = lib.srt_recvmsg(caller, buffer, MAX_PAYLOAD)
                    if received == SRT_ERROR:
                        error = lib.srt_getlasterror_str().decode(errors="replace")
                        if "timeout" in error.lower() or "again" in error.lower():
                            continue  # a quiet caller; libsrt breaks the connection when it is gone
                        break
                    if received > 0:
                        forward.sendto(buffer.raw[:received], self.forward)
            finally:
                lib.srt_close(caller)
                self.busy.clear()
                say("SRT source disconnected")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m onair.agent.ingest.srtlisten", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency-ms", type=int, default=2000)
    ap.add_argument("--forward", type=int, required=True, help="UDP port on 127.0.0.1 the MPEG-TS goes to")
    ap.add_argument("--ask", required=True, help="the agent's URL that decides about each caller")
    args = ap.parse_args(argv)
    token = os.environ.get(ASK_TOKEN_ENV, "")
    if not token:
        print(f"srtlisten: ${ASK_TOKEN_ENV} is not set", file=sys.stderr)
        return 2
    # The kernel's default action, not a Python handler: a handler runs only between bytecodes of the
    # main thread, which sits in srt_accept, so SIGTERM (also the parent-death signal) would wait
    # for the next caller. Nothing here needs finalizing.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        listener = Listener(load_library(), args.host, args.port, args.latency_ms, args.forward, args.ask, token)
        listener.open()
        listener.serve()
    except SrtError as exc:
        print(f"srtlisten: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
