"""Which request heads the fast path may answer itself (``onair.agent.fast_gets.parse_head``);
everything else is aiohttp's. Over real HTTP: tests/media/test_origin_fast_gets.py."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time

import pytest
from aiohttp import web

from onair.agent import http_limits
from onair.agent.fast_gets import date_header, parse_head

PLAIN = b"GET /hls/cmaf/360p/r1_000001.m4s HTTP/1.1\r\nHost: origin:8080\r\nOrigin: https://a.example\r\n\r\n"


def test_one_plain_keep_alive_get_gives_its_path_and_lower_case_headers():
    assert parse_head(PLAIN) == ("/hls/cmaf/360p/r1_000001.m4s", {"host": "origin:8080", "origin": "https://a.example"})
    assert parse_head(b"GET /a HTTP/1.1\r\nConnection: Keep-Alive\r\nX-Empty:\r\n\r\n") == (
        "/a",
        {"connection": "Keep-Alive", "x-empty": ""},
    )
    assert parse_head(b"GET /a HTTP/1.1\r\n\r\n") == ("/a", {})


@pytest.mark.parametrize(
    "head",
    [
        PLAIN[:-2],  # incomplete
        PLAIN + PLAIN,  # pipelined: aiohttp answers both in order
        PLAIN.replace(b"GET", b"HEAD"),
        PLAIN.replace(b"HTTP/1.1", b"HTTP/1.0"),
        PLAIN.replace(b".m4s", b".m4s?token=abc"),
        PLAIN.replace(b"r1_", b"r1%5f"),  # aiohttp decodes escapes
        PLAIN.replace(b"/hls", b"http://origin/hls"),
        PLAIN.replace(b"Host: origin:8080\r\n", b"Host: origin:8080\r\nHost: other\r\n"),
        PLAIN.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
        PLAIN.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"),
        PLAIN.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"),
        PLAIN.replace(b"\r\n\r\n", b"\r\nUpgrade: websocket\r\n\r\n"),
        PLAIN.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"),
        PLAIN.replace(b"\r\n\r\n", b"\r\n folded continuation\r\n\r\n"),
        PLAIN.replace(b"\r\n\r\n", b"\r\nBad Name: x\r\n\r\n"),
        PLAIN.replace(b"\r\n\r\n", b"\r\nX: a\x00b\r\n\r\n"),
        PLAIN.replace(b"Host: origin:8080\r\n", b"Host: origin\nX: y\r\n"),  # a bare LF
        PLAIN.replace(b"a.example", "bücher.example".encode()),  # non-ASCII: aiohttp's decoding
    ],
)
def test_anything_else_is_left_to_aiohttp(head):
    assert parse_head(head) is None


def test_date_is_the_http_date_of_now():
    before = int(time.time())
    line = date_header()
    assert line.startswith(b"Date: ") and line.endswith(b" GMT\r\n")
    when = email.utils.parsedate_to_datetime(line[6:-2].decode()).timestamp()
    assert before <= when <= time.time()


async def serve(answer, keepalive_timeout: float = 15.0):
    """A real aiohttp server on a free port with the fast path in front (as the origin runs it)."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="aiohttp")

    app = web.Application()
    app.router.add_get("/{path:.*}", handler)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    guard = http_limits.ConnectionGuard(http_limits.ListenerLimits("test", 16, 16), None, logging.getLogger("test"))
    site = http_limits.GuardedSite(runner, "127.0.0.1", 0, guard, fast_answer=answer)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    return await reader.readexactly(length)


async def test_a_failing_fast_answer_is_logged_and_aiohttp_answers(caplog):
    def answer(path: str, headers: dict[str, str]):
        if path == "/boom":
            raise RuntimeError("a bug")
        if path == "/fast":
            return [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", b"fast"]
        return None

    runner, port = await serve(answer)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await exchange(reader, writer, "/other") == b"aiohttp"
        assert await exchange(reader, writer, "/fast") == b"fast"
        with caplog.at_level(logging.ERROR, logger="onair.agent.http"):
            assert await exchange(reader, writer, "/boom") == b"aiohttp"
        assert "fast answer to GET /boom failed" in caplog.text and "RuntimeError: a bug" in caplog.text
        assert await exchange(reader, writer, "/fast") == b"fast"
        writer.close()
    finally:
        await runner.cleanup()


async def test_fast_answers_push_the_idle_deadline_back_and_an_idle_connection_still_closes():
    idle_timeout = 2.0
    runner, port = await serve(
        lambda path, headers: [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", b"fast"], idle_timeout
    )
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.2)  # aiohttp waits for the first request: the fast path may take it
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5 * idle_timeout
        while loop.time() < until:  # in use for longer than the idle timeout: kept open
            assert await exchange(reader, writer, "/fast") == b"fast"
            await asyncio.sleep(idle_timeout / 10)
        assert await asyncio.wait_for(reader.read(), 30) == b"", "the idle connection was not closed"
        writer.close()
    finally:
        await runner.cleanup()
