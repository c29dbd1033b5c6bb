"""The public port under connection abuse: slow or half-sent requests, floods, too few fds.

Attackers connect from other loopback addresses (127.0.0.2, ...) to the origin on 127.0.0.1, so
that they are other clients than the viewers and the transcoder stand-in (127.0.0.1).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import resource
import socket
import time
from pathlib import Path

import httpx
import m3u8
import pytest

from onair.agent import http_limits
from tests.fixtures.media import wait_for
from tests.fixtures.origin import origins, transcoders  # noqa: F401  (fixtures)

pytestmark = pytest.mark.media

# Low enough for 500 connections to exhaust an unprotected origin, as with a container's default.
SHORT_OF_FDS = 512
HALF_SENT = b"GET /hls/cmaf/master.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"


def attacker(address: str, port: int, first: bytes = b"") -> socket.socket | None:
    s = socket.socket()
    s.settimeout(3)
    s.bind((address, 0))
    try:
        s.connect(("127.0.0.1", port))
        if first:
            s.sendall(first)
    except OSError:
        s.close()
        return None
    s.setblocking(False)
    return s


def closed_by_server(s: socket.socket) -> bool:
    try:
        while s.recv(65536):  # a refusal's 503 comes before the end
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def limits_of(origin) -> tuple[int, int]:
    line = wait_for(
        lambda: re.search(r"public port: at most (\d+) connections, (\d+) per client", origin.log_text()),
        10,
        what="the public port's limits in the log",
    )
    return int(line.group(1)), int(line.group(2))


def viewer_get(origin, path: str = "hls/cmaf/master.m3u8") -> httpx.Response:
    return httpx.get(origin.url(path), timeout=5)


def contiguous(origin, playlist: str = "hls/cmaf/360p/index.m3u8") -> list[int]:
    listed = m3u8.loads(viewer_get(origin, playlist).text).segments
    numbers = [int(re.search(r"_(\d+)\.m4s", s.uri).group(1)) for s in listed]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"segments missing from the DVR: {numbers}"
    return numbers


def metric(origin, name: str, **labels: str) -> float:
    for line in origin.metrics().splitlines():
        if line.startswith(name + ("{" if labels else " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def lowest_free_fd(pid: int) -> int:
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


def test_slow_and_silent_connections_are_closed_and_viewers_are_served_meanwhile(origins, transcoders):
    origin = origins.start(phase="live")
    transcoders.start(origin)
    wait_for(lambda: viewer_get(origin).status_code == 200, 30, what="a master playlist")
    port = origin.config.http_port
    slow = [s for s in (attacker("127.0.0.2", port, HALF_SENT) for _ in range(200)) if s]
    silent = [s for s in (attacker("127.0.0.3", port) for _ in range(20)) if s]
    assert len(slow) == 200 and len(silent) == 20
    keepalive = httpx.Client(timeout=5)
    assert keepalive.get(origin.url("time")).status_code == 200  # then idle on its kept-alive connection
    try:
        bound = time.monotonic() + http_limits.DEFAULT_IDLE_TIMEOUT + 15
        while time.monotonic() < bound and not all(closed_by_server(s) for s in slow + silent):
            for s in slow:  # a header byte a second: slowloris keeps the connection "busy"
                with contextlib.suppress(OSError):
                    s.send(b"a")
            assert viewer_get(origin).status_code == 200
            time.sleep(1)
        still_open = sum(not closed_by_server(s) for s in slow + silent)
        assert still_open == 0, f"{still_open} slow or silent connections still open after the header timeout"
        assert keepalive.get(origin.url("time")).status_code == 200  # a new connection once the idle one closed
    finally:
        keepalive.close()
        for s in slow + silent:
            s.close()
    assert "Traceback" not in origin.log_text()


def test_a_flood_of_half_sent_requests_starves_neither_viewers_nor_uploads(origins, transcoders):
    origin = origins.start(phase="live", nofile=SHORT_OF_FDS)
    transcoder = transcoders.start(origin)
    wait_for(
        lambda: len(m3u8.loads(viewer_get(origin, "hls/cmaf/360p/index.m3u8").text).segments) >= 2,
        30,
        what="segments before the flood",
    )
    before = contiguous(origin)[-1]
    flood: list[socket.socket] = []
    try:
        for _ in range(500):
            s = attacker("127.0.0.2", origin.config.http_port, HALF_SENT)
            if s:
                flood.append(s)
        for _ in range(8):  # while the flood holds what it got
            assert viewer_get(origin).status_code == 200
            time.sleep(0.5)
        _, per_client = limits_of(origin)
        refused = metric(origin, "onair_origin_connections_refused_total", listener="public", reason="client")
        assert refused >= len(flood) - per_client > 0
        wait_for(lambda: contiguous(origin)[-1] >= before + 4, 20, what="segments uploaded during the flood")
    finally:
        for s in flood:
            s.close()
    transcoder.stop()
    log = origin.log_text()
    assert "Too many open files" not in log and "Traceback" not in log
    assert log.count("per-client cap") <= 3, "refusals are summarised, not logged one by one"
    assert len(log) < 50_000
    assert "Failed to open" not in transcoder.log_text() and "Connection refused" not in transcoder.log_text()


def test_a_full_listener_refuses_new_connections_at_once_with_a_503(origins):
    origin = origins.start(phase="live", nofile=SHORT_OF_FDS)
    total, per_client = limits_of(origin)
    assert per_client < total
    port = origin.config.http_port
    held: list[socket.socket] = []
    try:
        for i in range(math.ceil(total / per_client)):
            held += [s for s in (attacker(f"127.0.0.{10 + i}", port) for _ in range(per_client)) if s]
        wait_for(
            lambda: metric(origin, "onair_origin_connections", listener="public") >= total, 10, what="the listener full"
        )
        response = viewer_get(origin, "time")
        assert response.status_code == 503 and "connection limit" in response.json()["error"]
        assert response.headers["retry-after"] and response.headers["cache-control"] == "no-store"
        assert metric(origin, "onair_origin_connections_refused_total", listener="public", reason="total") >= 1
        # The transcoder's uploads have a listener and a budget of their own: a full public port
        # takes nothing from them.
        upload = httpx.put(
            f"{origin.upload_url}/hls/cmaf/360p/during.m4s",
            timeout=10,
            content=b"\x00\x00\x00\x18ftypiso6" + os.urandom(2000),
            headers={"Authorization": f"Bearer {origin.upload_token}"},
        )
        assert upload.status_code == 201, upload.text
    finally:
        for s in held:
            s.close()
    wait_for(lambda: viewer_get(origin, "time").status_code == 200, 10, what="room again once they left")
    assert "the listener is full" in origin.log_text()


def keep_alive_get(s: socket.socket, path: str) -> bytes:
    """One request on an open connection; the response head and whatever body came with it."""
    s.setblocking(True)
    s.sendall(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.setblocking(False)
    return data


def test_a_trusted_proxy_carries_more_viewers_than_one_address_may(origins):
    """Behind an ingress controller every viewer comes from its address: listed in trustedProxies,
    it is held only to the listener's total, while any other address keeps its per-client cap."""
    # Enough fds for a public port of a few hundred connections, a quarter of them per address.
    origin = origins.start(phase="live", nofile=5000, trusted_proxies=["127.0.0.2/32"])
    total, per_client = limits_of(origin)
    assert 2 * per_client + 40 <= total
    port = origin.config.http_port
    proxied: list[socket.socket] = []
    others: list[socket.socket] = []
    try:
        proxied = [s for s in (attacker("127.0.0.2", port) for _ in range(per_client + 20)) if s]
        others = [s for s in (attacker("127.0.0.3", port) for _ in range(per_client + 20)) if s]
        time.sleep(1)
        assert len(proxied) == per_client + 20
        # Every proxied connection is served: a viewer's request on the last of them is answered.
        for s in proxied[-3:]:
            assert keep_alive_get(s, "time").startswith(b"HTTP/1.1 200"), "a proxied viewer was refused"
        assert not any(closed_by_server(s) for s in proxied)
        refused = [s for s in others if closed_by_server(s)]
        assert len(refused) == 20, f"{len(refused)} of 127.0.0.3's connections over its cap refused, not 20"
        assert metric(origin, "onair_origin_connections_refused_total", listener="public", reason="client") == 20
    finally:
        for s in proxied + others:
            s.close()
    log = origin.log_text()
    assert "none for 127.0.0.2/32" in log
    assert "refused a connection from 127.0.0.3" in log and "ONAIR_PLAYBACK_TRUSTED_PROXIES" in log


def test_out_of_fds_an_upload_or_a_read_is_a_clear_503_not_a_loss_or_a_404(origins):
    origin = origins.start(phase="live")
    pid = origin.proc.pid
    body = b"\x00\x00\x00\x18ftypiso6" + os.urandom(2000)
    headers = {"Authorization": f"Bearer {origin.upload_token}"}
    with httpx.Client(timeout=10, headers=headers) as client:
        assert client.put(f"{origin.upload_url}/hls/cmaf/360p/a.m4s", content=body).status_code == 201
        master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n"
        assert client.put(f"{origin.upload_url}/hls/cmaf/master.m3u8", content=master).status_code == 201
        assert client.get(origin.url("hls/cmaf/master.m3u8")).status_code == 200
        # What an origin uploads is served from memory while it is recent; what a previous process left (or
        # what went out of memory) is read from the volume, and that needs a file descriptor.
        origins.restart(origin, phase="live")
        pid = origin.proc.pid
        assert client.get(origin.url("hls/cmaf/master.m3u8")).status_code == 200
        assert client.put(f"{origin.upload_url}/hls/cmaf/360p/a.m4s", content=body).status_code in (201, 204)
        # The kept-alive connections (one per port) stay open; the next fd the origin would get is over the limit,
        # so the file the upload goes to cannot be opened.
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), hard))
        try:
            response = client.put(f"{origin.upload_url}/hls/cmaf/360p/b.m4s", content=body)
            read = client.get(origin.url("hls/cmaf/master.m3u8"))
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert response.status_code == 503, response.text
        assert "out of file descriptors" in response.json()["error"] and response.headers["retry-after"]
        assert read.status_code == 503 and read.headers["retry-after"], (read.status_code, read.text)
        assert client.put(f"{origin.upload_url}/hls/cmaf/360p/b.m4s", content=body).status_code == 201
        assert client.get(origin.url("hls/cmaf/master.m3u8")).content == master
        # Once uploaded again the master is in memory: served however short of fds the origin is.
        assert client.put(f"{origin.upload_url}/hls/cmaf/master.m3u8", content=master).status_code == 201
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), hard))
        try:
            hot = client.get(origin.url("hls/cmaf/master.m3u8"))
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert hot.status_code == 200 and hot.content == master
    log = origin.log_text()
    assert "upload of hls/cmaf/360p/b.m4s NOT stored: the origin is out of file descriptors" in log
    assert "cannot serve GET /hls/cmaf/master.m3u8: Too many open files" in log
    assert "Traceback" not in log
    assert (Path(origin.data_dir) / "hls/cmaf/360p/b.m4s").read_bytes() == body
    assert metric(origin, "onair_origin_uploads_total", kind="segment", result="failed") == 1
