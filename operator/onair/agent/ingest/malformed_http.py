"""The agent API's log line for a client that does not speak HTTP (a scanner, an encoder pointed
at the wrong port): one WARNING without the bytes it sent."""

from __future__ import annotations

import logging

import aiohttp.http_exceptions


class _MalformedHttpFilter(logging.Filter):
    """aiohttp logs a non-HTTP client at DEBUG with a traceback holding every byte it sent; make
    it one WARNING line instead, and keep the rest of aiohttp.server at the configured level."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):
            reason = (exc.message or type(exc).__name__).splitlines()[0].strip()[:120]
            record.msg = "agent API: malformed HTTP request from %s: %s"
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "unknown client"
            record.args = (client, reason)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
            return True
        return record.levelno >= logging.getLogger().getEffectiveLevel()


def install_http_error_filter() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedHttpFilter) for f in server_log.filters):
        server_log.addFilter(_MalformedHttpFilter())
        server_log.setLevel(logging.DEBUG)  # the filter decides; aiohttp logs garbage at DEBUG
