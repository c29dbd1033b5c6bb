"""What keeps a public HTTP listener serving under abuse: timeouts, connection caps, quiet logs.

A listener (one aiohttp runner and port) gets ``ListenerLimits``:

* ``idle_timeout``: a connection must deliver a complete request head within this long of
  opening or of its previous response, and an idle keep-alive connection is closed after it
  (aiohttp's keep-alive deadline, which half-sent headers do not push back).
* ``max_connections``: open connections on this listener; ``max_per_client``: of those, from
  one client address, except from ``trusted_clients`` (the proxies viewers come through: an
  ingress controller, a gateway or a CDN carries every viewer behind it on its own few addresses,
  so only the listener's cap holds them). A connection over either cap is refused at once, before any parsing: a
  fixed ``503`` with ``Retry-After``, the write side closed, and at most ``REFUSAL_LINGER_SECONDS``
  for the client to read it (beyond ``MAX_LINGERING`` refusals at a time it is just reset).

The caps come out of the process's file descriptors (``FdBudget``): every connection may hold
its socket and one file (a segment being sent or an upload being written), and the fds the
process needs anyway (its own files, the agent API, transient accepts) stay reserved, so a flood
of connections meets a cap and never EMFILE, which would fail uploads and stall ``accept()``.
Each listener allots its own share, so when uploads get a listener of their own, viewers cannot
use up their connections or fds: allot the uploads' listener first.

Logs: every refusal, malformed request or event-loop error is counted; a line is written at
most every ``LOG_EVERY_SECONDS`` per kind, saying how many more were left out.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import os
import resource
import time
from collections import Counter as Tally
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import Counter, Gauge

from onair.agent import fast_gets
from onair.api.agent import ip_networks

DEFAULT_IDLE_TIMEOUT = 15.0
DEFAULT_MAX_CONNECTIONS = 4096
# One client address may use this share of a listener: an office NAT, a CDN node or an ingress
# controller carries many viewers on one address, so the share is large; four such addresses
# still cannot fill the listener.
CLIENT_SHARE = 4
MIN_CONNECTIONS = 16
MIN_PER_CLIENT = 8
FDS_PER_CONNECTION = 2  # its socket and the one file it reads or writes
ACCEPT_BACKLOG = 128  # asyncio accepts up to this many sockets in one go before any is refused
# fds the process needs besides its listeners' connections: the agent API and its clients,
# journal, logs, uploads being written, the executor's file operations.
FD_RESERVE = 64
# Raise the soft RLIMIT_NOFILE to the hard limit, up to this: enough for the default caps.
FD_LIMIT_WANTED = 65536
REFUSAL_LINGER_SECONDS = 1.0
MAX_LINGERING = 64
LOG_EVERY_SECONDS = 10.0
RETRY_AFTER_SECONDS = 5
EMFILE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


# ----------------------------------------------------------------------------- rate-limited logs
class LogLimiter:
    """At most one line per key every ``every`` seconds; the next one says how many were left out."""

    MAX_KEYS = 1024

    def __init__(self, logger: logging.Logger, every: float = LOG_EVERY_SECONDS) -> None:
        self.logger = logger
        self.every = every
        self._next: dict[str, float] = {}
        self._suppressed: Tally[str] = Tally()

    def allow(self, key: str) -> tuple[bool, int]:
        """(log now?, how many of this key were left out since the last line)."""
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] += 1
            return False, 0
        if len(self._next) >= self.MAX_KEYS:  # keys may carry paths: never grow without bound
            self._next = {k: t for k, t in self._next.items() if t > now}
        self._next[key] = now + self.every
        return True, self._suppressed.pop(key, 0)

    def log(self, key: str, level: int, msg: str, *args: Any, exc_info: Any = None) -> bool:
        allowed, left_out = self.allow(key)
        if allowed:
            if left_out:
                msg, args = f"{msg} (and %d more like it in the last %.0fs)", (*args, left_out, self.every)
            self.logger.log(level, msg, *args, exc_info=exc_info)
        return allowed


class RateLimitFilter(logging.Filter):
    """For loggers we do not write ourselves (aiohttp.server, asyncio): one record per logger,
    level and message template every ``every`` seconds, later ones counted into the next."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        super().__init__()
        self.limiter = LogLimiter(logging.getLogger(__name__), every)

    def filter(self, record: logging.LogRecord) -> bool:
        allowed, left_out = self.limiter.allow(f"{record.name}:{record.levelno}:{record.msg}")
        if allowed and left_out:
            record.msg = f"{record.getMessage()} (and %d more like it in the last %.0fs)"
            record.args = (left_out, self.limiter.every)
        return allowed


def quiet_library_logs(*names: str) -> None:
    """Rate-limit what the HTTP stack and the event loop log about each bad connection."""
    for name in names or ("aiohttp.server", "aiohttp.web", "aiohttp.internal", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter())


class MalformedHttpFilter(logging.Filter):
    """aiohttp logs a client that does not speak HTTP (a scanner, an encoder pointed at the wrong
    port) with a traceback holding the bytes it sent: at DEBUG for a bad first request line, as an
    ERROR otherwise. Make each one WARNING line without the bytes (the client already got its 400),
    and keep the rest of aiohttp.server at the configured level.

    ``message``: the line, with ``%(client)s``, ``%(status)s`` and ``%(reason)s``; the process says
    which of its listeners garbage can reach."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = (exc.message or type(exc).__name__).splitlines()[0].strip()[:160]
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "unknown client"
            record.msg, record.args = self.message, {"client": client, "status": exc.code, "reason": reason}
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
            return True
        return record.levelno >= logging.getLogger().getEffectiveLevel()


def install_malformed_http_filter(message: str) -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttpFilter) for f in server_log.filters):
        server_log.addFilter(MalformedHttpFilter(message))
        server_log.setLevel(logging.DEBUG)  # the filter decides; aiohttp logs a bad request line at DEBUG


def install_loop_exception_handler(loop: asyncio.AbstractEventLoop, logger: logging.Logger) -> None:
    """Event-loop errors, one line per kind every LOG_EVERY_SECONDS.

    Out of fds, CPython's accept loop reports the same EMFILE up to backlog times per wake-up,
    each with a traceback (megabytes a second); one line names the cause instead."""
    limiter = LogLimiter(logger)

    def handle(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        message = context.get("message", "event loop error")
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in EMFILE_ERRNOS:
            limiter.log(
                f"loop:{message}:{exc.errno}",
                logging.ERROR,
                "%s: %s (RLIMIT_NOFILE %d); new connections wait until fds are free again",
                message,
                exc.strerror,
                fd_limit(),
            )
            return
        limiter.log(
            f"loop:{message}:{type(exc).__name__}",
            logging.ERROR,
            "%s: %r",
            message,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__) if exc else None,
        )

    loop.set_exception_handler(handle)


# ----------------------------------------------------------------------------- budgets
@dataclass(frozen=True)
class ListenerLimits:
    name: str
    max_connections: int
    max_per_client: int
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    backlog: int = ACCEPT_BACKLOG
    trusted_clients: tuple[str, ...] = ()  # addresses or CIDRs not held to max_per_client

    def describe(self) -> str:
        trusted = f" (none for {', '.join(self.trusted_clients)})" if self.trusted_clients else ""
        return (
            f"at most {self.max_connections} connections, {self.max_per_client} per client address{trusted}, "
            f"{self.idle_timeout:g}s to send a request head and for idle keep-alive"
        )


def raise_fd_limit(wanted: int = FD_LIMIT_WANTED) -> int:
    """The soft RLIMIT_NOFILE, raised towards the hard limit first (containers often start at 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 32


class FdBudget:
    """The process's file descriptors, shared out between its listeners."""

    def __init__(self, limit: int, in_use: int) -> None:
        self.limit = limit
        self.free = limit - in_use - FD_RESERVE
        self.short = False  # some listener got less than it wanted

    @classmethod
    def of_this_process(cls) -> "FdBudget":
        return cls(raise_fd_limit(), open_fds())

    def allot(
        self,
        name: str,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_per_client: Optional[int] = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        fds_per_connection: int = FDS_PER_CONNECTION,
        backlog: int = ACCEPT_BACKLOG,
        trusted_clients: Sequence[str] = (),
    ) -> ListenerLimits:
        """Limits for one listener, its fds taken from what is left (the first allotted is served first)."""
        transient = backlog + MAX_LINGERING  # accepted-then-refused sockets not yet closed
        fits = max(0, self.free - transient) // fds_per_connection
        connections = max(MIN_CONNECTIONS, min(max_connections, fits))
        self.short = self.short or connections < max_connections
        self.free -= transient + connections * fds_per_connection
        per_client = max_per_client or max(MIN_PER_CLIENT, connections // CLIENT_SHARE)
        return ListenerLimits(
            name, connections, min(per_client, connections), idle_timeout, backlog, tuple(trusted_clients)
        )


# ----------------------------------------------------------------------------- connection caps
class ConnectionMetrics:
    """One set per registry (names spelled out by the role); every listener is a label value."""

    def __init__(self, registry: Any, open_name: str, refused_name: str) -> None:
        self.open = Gauge(open_name, "Open connections by listener", ["listener"], registry=registry)
        self.refused = Counter(
            refused_name,
            "Connections refused at once by listener and reason (client: that "
            "address is at its cap; total: the listener is full)",
            ["listener", "reason"],
            registry=registry,
        )


def _refusal(message: str) -> bytes:
    body = ('{"error": "%s"}' % message).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
        b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (RETRY_AFTER_SECONDS, len(body), body)
    )


@functools.lru_cache(maxsize=4096)
def _in_networks(client: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Per connection, so remembered: a listener sees the same few proxy addresses over and over."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:  # a Unix socket or no peer address: nobody's proxy
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class ConnectionGuard:
    """Counts one listener's connections by client address and admits or refuses new ones."""

    def __init__(
        self,
        limits: ListenerLimits,
        metrics: Optional[ConnectionMetrics],
        logger: logging.Logger,
        client_cap_hint: str = "",
    ) -> None:
        """``client_cap_hint``: what to do when a proxy meets the per-client cap, said in its log line."""
        self.limits = limits
        self._trusted = ip_networks(limits.trusted_clients)
        self._client_cap_hint = client_cap_hint
        self.open = 0
        self.by_client: Tally[str] = Tally()
        self.lingering = 0
        self._metrics = metrics
        self._log = LogLimiter(logger)
        self._responses = {
            "client": _refusal(
                f"too many connections from your address (at most {limits.max_per_client}): close some and retry"
            ),
            "total": _refusal(f"the server is at its connection limit ({limits.max_connections}): retry shortly"),
        }
        if metrics:
            metrics.open.labels(listener=limits.name).set_function(lambda: self.open)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Gate(self, inner)

    def admit(self, client: str) -> Optional[str]:
        """None, and the connection counted, or why it is refused."""
        if self.by_client[client] >= self.limits.max_per_client and not self.trusted(client):
            return "client"
        if self.open >= self.limits.max_connections:
            return "total"
        self.open += 1
        self.by_client[client] += 1
        return None

    def trusted(self, client: str) -> bool:
        return bool(self._trusted) and _in_networks(client, self._trusted)

    def release(self, client: str) -> None:
        self.open -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]

    def refuse(self, transport: asyncio.Transport, client: str, reason: str) -> bool:
        """Answer 503 and close; True when the connection lingers so the client can read it."""
        if self._metrics:
            self._metrics.refused.labels(listener=self.limits.name, reason=reason).inc()
        if reason == "client":
            self._log.log(
                "refused:client",
                logging.WARNING,
                "%s listener: refused a connection from %s, which already holds %d (the per-client cap)%s",
                self.limits.name,
                client,
                self.by_client[client],
                self._client_cap_hint,
            )
        else:
            self._log.log(
                "refused:total",
                logging.WARNING,
                "%s listener: refused a connection from %s, the listener is full (%d connections open, %d addresses)",
                self.limits.name,
                client,
                self.open,
                len(self.by_client),
            )
        transport.write(self._responses[reason])
        if self.lingering >= MAX_LINGERING or not transport.can_write_eof():
            transport.abort()
            return False
        self.lingering += 1
        transport.write_eof()
        return True


class _Gate(asyncio.Protocol):
    """Sits in front of the HTTP protocol of one connection: counts it, or refuses it unparsed."""

    __slots__ = ("guard", "factory", "inner", "client", "transport", "timer")

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.factory = factory
        self.inner: Optional[asyncio.Protocol] = None
        self.client = ""
        self.transport: Optional[asyncio.Transport] = None
        self.timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, only alike).
        transport = self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        reason = self.guard.admit(self.client)
        if reason is None:
            self.inner = self.factory()
            self.inner.connection_made(transport)
        elif self.guard.refuse(transport, self.client, reason):
            self.timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER_SECONDS, transport.abort)
        else:
            self.transport = None  # aborted: connection_lost only releases the lingering slot if set

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> Optional[bool]:
        if self.inner is not None:
            return self.inner.eof_received()
        return None  # a refused client read its 503 and left: close

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.inner is not None:
            self.guard.release(self.client)
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)
        elif self.transport is not None:
            self.guard.lingering -= 1
            if self.timer:
                self.timer.cancel()
        self.transport = None


class GuardedSite(web.BaseSite):
    """An aiohttp TCP site whose connections pass ``guard`` first; ``fast_answer``: plain GETs it
    answers skip aiohttp's request handling (``fast_gets``)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        fast_answer: Optional[fast_gets.Answer] = None,
    ) -> None:
        super().__init__(runner, backlog=guard.limits.backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._fast_answer = fast_answer

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        protocol: Callable[[], asyncio.Protocol] = server
        if self._fast_answer is not None:
            protocol = fast_gets.FastGets.factory(server, self._fast_answer)
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(protocol), self._host, self._port, backlog=self._backlog
        )
