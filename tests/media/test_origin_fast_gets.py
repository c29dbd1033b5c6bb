"""The origin's fast answers (``onair.agent.fast_gets``): a viewer's plain GET of a part or segment
in memory is written at once, without aiohttp's request handling. Over real HTTP to a real origin:
the answer is the one aiohttp gives (status, headers in order, bytes), everything that needs more
than a prepared answer still gets aiohttp's, and keep-alive works as before."""

from __future__ import annotations

import socket
import time

import pytest

from onair.agent import http_limits
from tests.fixtures.media import wait_for
from tests.fixtures.origin import origins  # noqa: F401  (fixture)
from tests.media.test_origin_llhls import PLAYLIST, Uploader

pytestmark = pytest.mark.media

FAST = "onair_origin_http_fast_responses_total"
SERVED = "onair_origin_http_requests_total"


class BigParts(Uploader):
    """Parts and segments of realistic size (tens of KB), so an answer spans many TCP segments."""

    def put(self, name: str, data: bytes) -> None:
        super().put(name, data * (40_000 // len(data) + 1) if name.endswith(".m4s") else data)


def metric(origin, name: str, **labels: str) -> float:
    for line in origin.metrics().splitlines():
        if line.startswith(name + ("{" if labels else " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def get(path: str, *extra: str, version: str = "1.1", method: str = "GET") -> bytes:
    return (
        f"{method} /{path} HTTP/{version}\r\nHost: origin\r\n" + "".join(f"{h}\r\n" for h in extra) + "\r\n"
    ).encode()


class Wire:
    """One keep-alive connection, its answers read as they come (Content-Length bodies)."""

    def __init__(self, origin) -> None:
        self.sock = socket.create_connection(("127.0.0.1", origin.config.http_port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, head_only: bool = False) -> tuple[str, list[tuple[str, str]], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the origin closed the connection"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = [(name, value.strip()) for name, _, value in (line.partition(":") for line in lines)]
        length = 0 if head_only else int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
        while len(self.buffer) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "the origin closed the connection mid-answer"
            self.buffer += chunk
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed_by_server(self, within: float) -> bool:
        self.sock.settimeout(within)
        try:
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def without_date(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() != "date"]


@pytest.fixture
def live_parts(origins, request):
    origin = origins.start(phase="live", **getattr(request, "param", {}))
    uploader = BigParts(origin)
    for _ in range(10):  # segments 0 and 1 closed, segment 2 has parts 0 and 1
        uploader.part()
    wait_for(lambda: origin.get(PLAYLIST).status_code == 200, timeout=10, what="the LL playlist")
    yield origin, uploader
    uploader.client.close()


@pytest.mark.parametrize(
    "live_parts, origin_header",
    [
        ({}, None),
        ({}, "https://site.example"),
        ({"cors_origins": ["https://site.example"]}, "https://site.example"),
        ({"cors_origins": ["https://site.example"]}, "https://other.example"),
    ],
    indirect=["live_parts"],
)
def test_a_part_or_segment_in_memory_gets_aiohttps_answer_at_once(live_parts, origin_header):
    origin, uploader = live_parts
    extra = [f"Origin: {origin_header}"] if origin_header else []
    for path in (f"{uploader.dir}/{uploader.name(9)}", f"{uploader.dir}/{uploader.segments[-1][0]}"):
        wire = Wire(origin)
        try:
            # Two heads in one read are aiohttp's to answer (pipelined: in order)...
            wire.send(get(path, *extra) * 2)
            through_aiohttp = [wire.answer(), wire.answer()]
            # ...one plain GET while aiohttp waits for the next request is answered at once, on the
            # same connection (aiohttp may not be waiting yet right after its answer: asked again).
            for _ in range(5):
                fast_before, served_before = metric(origin, FAST), metric(origin, SERVED, status="200")
                wire.send(get(path, *extra))
                fast = wire.answer()
                assert metric(origin, SERVED, status="200") == served_before + 1
                if metric(origin, FAST) == fast_before + 1:
                    break
            else:
                pytest.fail("a plain GET of a file in memory never got a fast answer")
        finally:
            wire.close()
        expected = through_aiohttp[0]
        assert through_aiohttp[1][0] == expected[0] == "HTTP/1.1 200 OK"
        assert fast[0] == expected[0]
        assert without_date(fast[1]) == without_date(expected[1]), "headers differ from aiohttp's (order too)"
        assert fast[2] == expected[2] == (origin.data_dir / path).read_bytes()
        assert len(fast[2]) > 40_000
        names = {k.lower() for k, _ in fast[1]}
        assert "date" in names
        allowed = "*" in origin.config.cors_origins or origin_header in origin.config.cors_origins
        assert ("access-control-allow-origin" in names) == allowed


def test_what_needs_more_than_a_prepared_answer_still_gets_aiohttps(live_parts):
    origin, uploader = live_parts
    part = f"{uploader.dir}/{uploader.name(9)}"
    size = (origin.data_dir / part).stat().st_size
    wire = Wire(origin)
    try:
        wire.send(get(part))
        etag = dict(wire.answer()[1])["Etag"]
        fast_before = metric(origin, FAST)
        cases = [
            (get(part, "Range: bytes=0-99"), "206", 100),
            (get(part, f"If-None-Match: {etag}"), "304", 0),
            (get(part + f"?token={origin.token()}"), "200", size),  # a member: private cache headers
            (get(part, f"Authorization: Bearer {origin.read_token}"), "200", size),
            (get(part, method="HEAD"), "200", 0),
            (get(part.replace("/", "//", 1)), "400", None),
            (get(part.replace("r1_", "r1%5f")), "200", size),  # percent-escaped: aiohttp decodes it
            (get(f"{uploader.dir}/{uploader.name(10)}.jpg"), "404", None),
        ]
        for request, status, length in cases:
            wire.send(request)
            answer = wire.answer(head_only=request.startswith(b"HEAD"))
            assert answer[0].split(" ")[1] == status, (request, answer[0], answer[2][:200])
            if length is not None:
                assert len(answer[2]) == length, request
        # HTTP/1.0 and Connection: close end the connection, as aiohttp does.
        for request in (get(part, version="1.0"), get(part, "Connection: close")):
            wire.close()
            wire = Wire(origin)
            wire.send(request)
            assert wire.answer()[0].split(" ")[1] == "200"
            assert wire.closed_by_server(within=5)
        assert metric(origin, FAST) == fast_before, "a request needing aiohttp got a fast answer"
        # A backstage origin: viewers need a token, so no prepared answer, and the stored part is refused.
        origin.set_phase("backstage")
        wire.close()
        wire = Wire(origin)
        wire.send(get(part))
        status, headers, _ = wire.answer()
        assert status.split(" ")[1] == "403" and dict(headers)["Cache-Control"] == "no-store"
        assert metric(origin, FAST) == fast_before
    finally:
        wire.close()


def test_fast_answers_keep_a_connection_alive_and_an_idle_one_still_closes(live_parts):
    origin, uploader = live_parts
    part = f"{uploader.dir}/{uploader.name(9)}"
    wire = Wire(origin)
    try:
        fast_before = metric(origin, FAST)
        # Asked for once a second for longer than the idle timeout: never closed in between.
        until = time.monotonic() + http_limits.DEFAULT_IDLE_TIMEOUT + 3
        asked = 0
        while time.monotonic() < until:
            wire.send(get(part))
            assert wire.answer()[0] == "HTTP/1.1 200 OK"
            asked += 1
            time.sleep(1)
        assert metric(origin, FAST) >= fast_before + asked - 1  # the first may find aiohttp not yet waiting
        # The playlist (aiohttp) and the part (fast) alternate on one connection, in order.
        for _ in range(3):
            wire.send(get(PLAYLIST))
            status, headers, body = wire.answer()
            assert status == "HTTP/1.1 200 OK" and body.startswith(b"#EXTM3U")
            wire.send(get(part))
            assert wire.answer()[2] == (origin.data_dir / part).read_bytes()
        # Then idle: closed once the idle timeout passes after the last (fast) answer.
        assert wire.closed_by_server(within=http_limits.DEFAULT_IDLE_TIMEOUT + 5)
    finally:
        wire.close()
