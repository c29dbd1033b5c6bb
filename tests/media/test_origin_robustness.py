"""What a public port gets thrown at it: traversal, oversized bodies, garbage, bad credentials."""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from onair.agent.origin import server as origin_server
from onair.api.agent import OriginConfig
from tests.fixtures.media import wait_for
from tests.fixtures.origin import origins  # noqa: F401  (fixture)

pytestmark = pytest.mark.media

SEGMENT = b"\x00\x00\x00\x18ftypiso6" + os.urandom(2000)


def raw_request(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Bytes on the wire, no client-side normalisation of the path."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return out


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


def put(origin, path: str, body: bytes, token: str | None = None, **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if token is not False:
        headers["Authorization"] = f"Bearer {token or origin.upload_token}"
    return httpx.put(f"{origin.upload_url}/{path}", content=body, headers=headers, timeout=10, **kwargs)


TRAVERSALS = [
    "/hls/../../../../etc/passwd",
    "/hls/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/hls/cmaf/..%2f..%2f..%2f..%2fetc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "//etc/passwd",
    "/hls/cmaf/%00.ts",
    "/hls/cmaf/x.ts%00.jpg",
    "/hls/..\\..\\etc\\passwd",
    "/.tmp/x.ts",
    "/hls/cmaf/%2e%2e%5c%2e%2e%5csecret.ts",
]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_traversal_never_leaves_data_dir(origins, tmp_path, method):
    origin = origins.start(phase="live")
    secret = origin.data_dir.parent / "secret.ts"  # next to data_dir, reachable by one ../
    secret.write_bytes(b"TOP-SECRET")
    for target in TRAVERSALS + ["/hls/cmaf/../../../secret.ts", "/upload/../secret.ts"]:
        path = target if method == "GET" else f"/upload{target}"
        body = b"x" * 10 if method == "PUT" else b""
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {origin.upload_token}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        # Playback on the public port, uploads on theirs.
        response = raw_request(origin.config.http_port if method == "GET" else origin.config.upload_port, request)
        assert status_of(response) in (400, 404), (path, response[:200])
        assert b"root:" not in response and b"TOP-SECRET" not in response
    assert secret.read_bytes() == b"TOP-SECRET"
    assert not (origin.data_dir.parent.parent / "etc").exists()
    assert origin.running


def test_uploads_need_the_upload_token(origins):
    origin = origins.start()
    assert put(origin, "hls/cmaf/360p/a.m4s", SEGMENT, token=False).status_code == 401
    assert put(origin, "hls/cmaf/360p/a.m4s", SEGMENT, token="wrong").status_code == 403
    assert put(origin, "hls/cmaf/360p/a.m4s", SEGMENT).status_code == 201
    deleted = httpx.delete(f"{origin.upload_url}/hls/cmaf/360p/a.m4s", timeout=5)
    assert deleted.status_code == 401
    assert (origin.data_dir / "hls/cmaf/360p/a.m4s").is_file()
    # outside the output tree, or not a media file: refused even with the token
    assert put(origin, "player", b"<html>").status_code == 400
    assert put(origin, "hls/cmaf/run.sh", b"#!/bin/sh").status_code == 400
    assert put(origin, "hls/cmaf/360p/index.m3u8", b"not a playlist").status_code == 400
    assert "refused PUT /upload/" in origin.log_text()


def test_no_upload_token_configured_refuses_every_upload(origins):
    origin = origins.start(upload_token=None)
    response = put(origin, "hls/cmaf/360p/a.m4s", SEGMENT, token="anything")
    assert response.status_code == 403 and "no upload token" in response.json()["error"]
    assert "uploads DISABLED" in origin.log_text()


def test_oversized_uploads_and_requests_get_413(origins):
    origin = origins.start(phase="live", max_upload_bytes=1024 * 1024)
    big = os.urandom(1024 * 1024 + 1)
    assert put(origin, "hls/cmaf/360p/big.m4s", big).status_code == 413  # Content-Length known up front

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    assert put(origin, "hls/cmaf/360p/big2.m4s", chunks()).status_code == 413  # chunked, like ffmpeg
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n" + b"#EXTINF:1,\nx.m4s\n" * 200_000
    assert put(origin, "hls/cmaf/360p/index.m3u8", playlist).status_code == 413
    assert not list((origin.data_dir / "hls").rglob("big*"))
    # a body on a playback route is refused without being read
    response = raw_request(
        origin.config.http_port,
        b"GET /hls/cmaf/master.m3u8 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + b"a" * 1000,
    )
    assert status_of(response) == 413
    assert put(origin, "hls/cmaf/360p/ok.m4s", SEGMENT).status_code == 201


def test_garbage_on_the_port_is_dropped_and_the_server_keeps_serving(origins):
    origin = origins.start(phase="live")
    port = origin.config.http_port
    junk = [
        os.urandom(4096),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(512),  # a TLS ClientHello
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"PUT /upload/hls/cmaf/x.m4s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n",
    ]
    for target in (port, origin.config.upload_port):
        # The public port refuses every upload (403) before reading a body.
        expected = (400, 401, 413, 431) + ((403,) if target == port else ())
        for data in junk:
            response = raw_request(target, data)
            assert response == b"" or status_of(response) in expected, (target, response[:100])
    # an upload whose sender vanishes mid-body stores nothing
    with socket.create_connection(("127.0.0.1", origin.config.upload_port)) as s:
        s.sendall(
            f"PUT /upload/hls/cmaf/360p/cut.m4s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{origin.upload_token}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"a" * 1000
        )
        time.sleep(0.3)
    wait_for(lambda: "upload of hls/cmaf/360p/cut.m4s aborted" in origin.log_text(), 10, what="the abort logged")
    assert not (origin.data_dir / "hls/cmaf/360p/cut.m4s").exists()
    # half-open connections that never finish their request do not block others
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    for s in idle:
        s.sendall(b"GET /hls/cmaf/master.m3u8 HTTP/1.1\r\nHost")
    try:
        assert httpx.get(origin.url("time"), timeout=5).status_code == 200
    finally:
        for s in idle:
            s.close()
    assert origin.running
    log = origin.log_text()
    assert "Traceback" not in log
    assert "malformed HTTP request refused" in log


def test_a_deeply_nested_desired_body_is_a_400(origins):
    origin = origins.start()
    for body in ('{"phase":' + "[" * 100_000 + "]" * 100_000 + "}", "[" * 100_000 + "]" * 100_000):
        response = httpx.put(
            f"{origin.agent}/desired",
            content=body,
            timeout=10,
            headers={"Content-Type": "application/json", **origin.auth_headers()},
        )
        assert response.status_code == 400, (response.status_code, response.text[:200])
        assert "invalid desired state" in response.json()["error"]
    assert origin.put_desired(phase="live")["phase"] == "live"
    assert "Traceback" not in origin.log_text()


def test_cors_preflight_time_and_headers(origins):
    origin = origins.start(phase="live", cors_origins=["https://app.example"])
    preflight = httpx.options(
        origin.url("hls/cmaf/master.m3u8"),
        timeout=5,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,range",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    other = httpx.get(origin.url("time"), headers={"Origin": "https://evil.example"}, timeout=5)
    assert "access-control-allow-origin" not in other.headers
    response = httpx.get(origin.url("time"), headers={"Origin": "https://app.example"}, timeout=5)
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["vary"] == "Origin"
    served = time.mktime(time.strptime(response.text[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(served - time.time()) < 5
    assert response.text.endswith("Z") and response.headers["cache-control"] == "no-store"
    player = origin.get("player")
    assert player.status_code == 200
    assert "x-frame-options" not in player.headers  # embeddable in an iframe
    assert 'data-projection="regular"' in player.text


def test_player_states_its_projection(origins):
    origin = origins.start(phase="live", projection="vr360")
    page = origin.get("player").text
    assert 'data-projection="vr360"' in page and "360°" in page


async def test_player_without_built_hls_js_is_a_clear_503(tmp_path, monkeypatch):
    monkeypatch.setattr(origin_server, "HLS_JS", tmp_path / "missing" / "hls.min.js")
    agent = origin_server.OriginAgent(
        OriginConfig(livestream="media/x", data_dir=str(tmp_path / "data"), playback_secret_file=str(tmp_path / "none"))
    )
    agent.storage.prepare()
    agent.desired = agent.desired.model_copy(update={"phase": "live"})
    async with TestClient(TestServer(agent.public, host="127.0.0.1")) as client:
        for path in ("/player", "/static/vendor/hls.min.js"):
            response = await client.get(path)
            assert response.status == 503
            assert "scripts/build-player" in await response.text()
