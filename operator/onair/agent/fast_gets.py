"""Plain GETs of a keep-alive connection answered without aiohttp's request machinery.

aiohttp spends about 40 µs of CPU on every request before a byte of the answer is written (a
task, a Request, routing, middlewares, a Response, header serialization). A viewer at the live
edge asks for a file the server holds in memory, and an LL-HLS viewer does so four times a
second: for those, a server can recognise the request head as it arrives and write a prepared
answer at once (``FastGets``), leaving everything else to aiohttp on the same connection.

Only what is unambiguous is taken: one complete ``GET /path HTTP/1.1`` head in one read, with no
query, percent-escape, body, upgrade or ``Connection`` other than keep-alive, while aiohttp has
nothing in flight on the connection (so answers keep their order) and the connection's write
buffer is below its high-water mark (a client that does not read gets no more than aiohttp
would give it: aiohttp waits for the buffer to drain).
The answer function sees the path and the headers and returns the response's bytes, or None to
leave the request to aiohttp. A connection on which aiohttp parsed anything that may leave its
parser mid-message (a partial head, a body) stays with aiohttp.

aiohttp's keep-alive bookkeeping is advanced as aiohttp does after an answer of its own, so an
idle connection still closes ``keepalive_timeout`` after its last answer. That uses attributes
of aiohttp's ``RequestHandler``; with an aiohttp that lacks them every request goes to aiohttp.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from typing import Any, Callable, Optional, Sequence, cast

log = logging.getLogger("onair.agent.http")

# The request head, checked whole by one match: aiohttp would answer 400 to anything else, or
# decode what the fast path must not guess at (``%xx``, a query, an absolute URI, non-ASCII bytes).
_HEAD = re.compile(
    rb"GET (/[^?#%\x00-\x20\x7f-\xff]*) HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t ]*[\t\x20-\x7e]*\r\n)*)\r\n\Z"
)
# Request headers after which the connection's next bytes may not start a new request head.
_BODY_OR_UPGRADE = re.compile(rb"\r\n(?:content-length|transfer-encoding|upgrade|expect)[\t ]*:", re.IGNORECASE)
# What RequestHandler has that the bookkeeping below uses (aiohttp 3.10 and later).
_HANDLER_ATTRIBUTES = (
    "_waiter",
    "_close",
    "_force_close",
    "_keepalive",
    "_keepalive_timeout",
    "_keepalive_handle",
    "_next_keepalive_close_time",
    "_process_keepalive",
    "writing_paused",
)

FAULT_LOG_EVERY_SECONDS = 60.0
_fault_logged_at = -FAULT_LOG_EVERY_SECONDS

Headers = dict[str, str]
# (path, lower-case header names to values) -> the whole answer, or None: aiohttp answers.
Answer = Callable[[str, Headers], Optional[Sequence[bytes]]]


def parse_head(data: bytes) -> Optional[tuple[str, Headers]]:
    """The path and headers of ``data`` when it is exactly one plain keep-alive GET head, else None."""
    match = _HEAD.match(data)
    if match is None:
        return None
    headers: Headers = {}
    for line in match.group(2).decode("ascii").split("\r\n")[:-1]:
        name, _, value = line.partition(":")
        name = name.lower()
        if name in headers:
            return None  # a repeated header: aiohttp's rules for it, not ours
        headers[name] = value.strip(" \t")
    if "content-length" in headers or "transfer-encoding" in headers or "upgrade" in headers or "expect" in headers:
        return None
    connection = headers.get("connection")
    if connection is not None and connection.lower() != "keep-alive":
        return None
    return match.group(1).decode("ascii"), headers


_date: tuple[int, bytes] = (0, b"")


def date_header() -> bytes:
    """``Date: ...\\r\\n`` for now, formatted once a second (as aiohttp does)."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, b"Date: %s\r\n" % email.utils.formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]


class FastGets(asyncio.Protocol):
    """Between a connection and aiohttp's protocol for it: plain GETs that ``answer`` knows are
    answered here, all else (and all bytes once aiohttp parses a body) passes to aiohttp."""

    __slots__ = ("inner", "answer", "transport", "own")

    def __init__(self, inner: asyncio.Protocol, answer: Answer) -> None:
        # aiohttp's RequestHandler: its keep-alive state is read and advanced here (see the module doc).
        self.inner: Any = inner
        self.answer = answer
        self.transport: Optional[asyncio.Transport] = None
        self.own = True  # False: aiohttp may be mid-message, every byte is its own from now on

    @classmethod
    def factory(cls, inner: Callable[[], asyncio.Protocol], answer: Answer) -> Callable[[], asyncio.Protocol]:
        probe = inner()
        missing = [name for name in _HANDLER_ATTRIBUTES if not hasattr(probe, name)]
        if missing:
            log.warning(
                "every request goes through aiohttp: its RequestHandler lacks %s (fast answers need aiohttp 3.10+)",
                ", ".join(missing),
            )
            return inner
        return lambda: cls(inner(), answer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.own and data.endswith(b"\r\n\r\n"):
            if self._idle():
                head = parse_head(data)
                if head is not None:
                    answer = self._answer(*head)
                    if answer is not None:
                        assert self.transport is not None
                        self.transport.writelines(answer)
                        self._answered()
                        return
            if _BODY_OR_UPGRADE.search(data):
                self.own = False
        else:
            self.own = False
        self.inner.data_received(data)

    def _answer(self, path: str, headers: Headers) -> Optional[Sequence[bytes]]:
        try:
            return self.answer(path, headers)
        except Exception:
            # A fault of the fast path must not cost the viewer the answer aiohttp can give.
            global _fault_logged_at
            now = time.monotonic()
            if now - _fault_logged_at >= FAULT_LOG_EVERY_SECONDS:
                _fault_logged_at = now
                log.exception("fast answer to GET %s failed; aiohttp answers it", path[:200])
            return None

    def _idle(self) -> bool:
        """aiohttp waits for the next request, and the client reads what it is sent."""
        inner = self.inner
        waiter = inner._waiter
        return (
            waiter is not None
            and not waiter.done()
            and not inner._close
            and not inner._force_close
            and not inner.writing_paused
        )

    def _answered(self) -> None:
        """What aiohttp does after a keep-alive answer: the idle deadline starts again from now."""
        inner = self.inner
        inner._keepalive = True
        timeout = inner._keepalive_timeout
        if timeout:
            loop = asyncio.get_running_loop()
            close_time = loop.time() + timeout
            inner._next_keepalive_close_time = close_time
            if inner._keepalive_handle is None:
                inner._keepalive_handle = loop.call_at(close_time, inner._process_keepalive)

    def eof_received(self) -> Optional[bool]:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.transport = None
        self.inner.connection_lost(exc)
