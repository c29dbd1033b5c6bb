"""Which request heads the fast path may answer itself (``onair.agent.fast_gets.parse_head``);
everything else is aiohttp's. Over real HTTP: tests/media/test_origin_fast_gets.py."""

from __future__ import annotations

import email.utils
import time

import pytest

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
