"""Bad input and bad circumstances: the agent logs clearly and keeps serving."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.ingest import WhipPublisher
from tests.fixtures.media import free_port, process_alive, wait_for

pytestmark = pytest.mark.media


def _tcp_garbage(port: int, payload: bytes, tls: bool = False) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        sock = raw
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            sock = ctx.wrap_socket(raw)
        sock.sendall(payload)
        sock.settimeout(2)
        try:
            sock.recv(4096)
        except (OSError, ssl.SSLError):
            pass


def test_garbage_on_every_port_is_logged_and_survived(ingest_agent, publishers):
    ingest = ingest_agent.start()  # every protocol, with TLS
    # Plain junk, HTTP-looking junk, random junk and a TLS record header followed by junk (nginx
    # only tries TLS when the first byte says so).
    for junk in (bytes(range(256)) * 16, os.urandom(4096), b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 2):
        for port in (ingest.ports.rtmp, ingest.ports.rtmps, ingest.ports.whip, ingest.ports.agent):
            _tcp_garbage(port, junk)
            _tcp_garbage(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + junk)
    _tcp_garbage(ingest.ports.rtmps, bytes(range(256)) * 16, tls=True)  # valid TLS, garbage RTMP inside
    _tcp_garbage(ingest.ports.whip, b"\x01\x02 /whip HTTP/1.1\r\n\r\n", tls=True)  # valid TLS, garbage HTTP
    _tcp_garbage(ingest.ports.whip, b"POST /whip HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", tls=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for _ in range(50):
            udp.sendto(os.urandom(1316), ("127.0.0.1", ingest.ports.srt))
    ingest.wait_log("RTMP: bad handshake from 127.0.0.1")
    ingest.wait_log("RTMPS: TLS handshake failed from 127.0.0.1")
    ingest.wait_log("RTMP: bad handshake from a client of the RTMPS port")
    ingest.wait_log("WHIP: TLS handshake failed from 127.0.0.1")
    ingest.wait_log("WHIP: malformed HTTP request from 127.0.0.1")
    ingest.wait_log("agent API: malformed HTTP request from 127.0.0.1")
    assert "Traceback" not in ingest.log_text()
    assert ingest.running and ingest.ready()
    # Every protocol still works afterwards.
    pub = publishers.rtmp(ingest.rtmp_url, width=320, height=240)
    assert ingest.wait_receiving()["protocol"] == "rtmp"
    pub.stop()
    ingest.wait_receiving(False, timeout=10)
    pub = publishers.srt(ingest.srt_url, width=320, height=240)
    assert ingest.wait_receiving()["protocol"] == "srt"
    pub.stop()
    ingest.wait_receiving(False, timeout=10)
    # The SRT caller holds the slot until srt-live-transmit sees it hang up, which can come a
    # moment after nginx's bridge stopped publishing; WHIP before that is rightly a 409.
    wait_for(lambda: re.search(r"SRT caller .*left", ingest.log_text()), 15, what="the SRT caller to leave")
    client = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
    try:
        assert client.status == 201
        assert ingest.wait_receiving()["protocol"] == "whip"
    finally:
        client.stop()


@pytest.mark.parametrize(
    "field, udp", [("rtmp_port", False), ("srt_port", True), ("whip_port", False), ("agent_port", False)]
)
def test_port_in_use_at_startup_is_a_clear_error(ingest_agent, field, udp):
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as held:
        held.bind(("127.0.0.1", 0))
        if not udp:
            held.listen()
        port = held.getsockname()[1]
        ingest = ingest_agent.start(wait_ready=False, **{field: port})
        code = ingest.proc.wait(20)
    assert code != 0
    log = ingest.log_text()
    camel = {"rtmp_port": "rtmpPort", "srt_port": "srtPort", "whip_port": "whipPort", "agent_port": "agentPort"}[field]
    assert f"127.0.0.1:{port}" in log and camel in log and "Traceback" not in log
    assert not ingest.process_tree(), "children left behind"


def test_inactive_slot_refuses_every_protocol(ingest_agent, publishers):
    ingest = ingest_agent.start(active=False)
    rtmp = publishers.rtmp(ingest.rtmp_url)
    assert rtmp.wait(15) != 0
    ingest.wait_log("refused rtmp publish from 127.0.0.1: the livestream is not active")
    client = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
    client.stop()
    assert client.status == 403 and "not active" in client.body
    srt = publishers.srt(ingest.srt_url)
    assert srt.wait(20) != 0  # no SRT listener while inactive
    assert not ingest.status()["receiving"]
    # PUT /desired active=true opens the slot without a restart.
    ingest.put_desired(active=True)
    wait_for(ingest.ready, 10, what="the SRT listener back")
    publishers.srt(ingest.srt_url)
    assert ingest.wait_receiving()["protocol"] == "srt"


def test_deactivating_drops_the_live_publisher(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    pub = publishers.rtmp(ingest.rtmp_url)
    ingest.wait_receiving()
    assert ingest.put_desired(active=False)["active"] is False
    ingest.wait_receiving(False, timeout=10)
    assert pub.wait(15) != 0
    again = publishers.rtmp(ingest.rtmp_url)
    assert again.wait(15) != 0
    ingest.wait_log("the livestream is not active")
    ingest.put_desired(active=True)
    publishers.rtmp(ingest.rtmp_url)
    ingest.wait_receiving()


def test_sigterm_stops_every_child(ingest_agent, publishers):
    ingest = ingest_agent.start()
    publishers.rtmp(ingest.rtmp_url, width=320, height=240)
    ingest.wait_receiving()
    assert len(ingest.process_tree()) >= 5  # agent, nginx master + worker, srt listener, srt bridge
    ingest.proc.terminate()
    assert ingest.proc.wait(20) == 0
    wait_for(lambda: not ingest.process_tree(), 5, what="every child to exit")
    assert "stopping" in ingest.log_text()


def _port_free(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        # What nginx itself sets: only a socket still bound (not TIME_WAIT) makes this fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_killed_agent_takes_its_children_and_ports_along(ingest_agent, publishers):
    # SIGKILL (OOM, a crashed node agent): the agent cannot stop anything itself.
    ingest = ingest_agent.start(protocols=("rtmp", "srt"))
    publishers.rtmp(ingest.rtmp_url, width=320, height=240)
    ingest.wait_receiving()
    children = [pid for pid in ingest.process_tree() if pid != ingest.proc.pid]
    assert len(children) >= 4, children  # nginx master + worker, srt listener, srt bridge
    assert not _port_free(ingest.ports.rtmp) and not _port_free(ingest.ports.srt, socket.SOCK_DGRAM)
    ingest.proc.kill()
    ingest.proc.wait(5)
    wait_for(
        lambda: not [pid for pid in children if process_alive(pid)], 10, what="every child of the killed agent to exit"
    )
    for port, kind in (
        (ingest.ports.rtmp, socket.SOCK_STREAM),
        (ingest.ports.agent, socket.SOCK_STREAM),
        (ingest.ports.srt, socket.SOCK_DGRAM),
    ):
        assert _port_free(port, kind), f"port {port} still bound after the agent was killed"


def test_cli_usage_errors_are_one_line(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"role": "ingest"}')
    out = subprocess.run(
        [sys.executable, "-m", "onair.cli", "agent", "ingest", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "is invalid" in out.stderr and "livestream" in out.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to switch to nobody")
def test_rendered_nginx_runs_as_an_unprivileged_user():
    """The container may run as any uid: nginx must need nothing but its work dir."""
    from onair.agent.ingest import nginx

    work = Path(tempfile.mkdtemp(prefix="onair-nonroot-", dir="/tmp"))
    try:
        work.chmod(0o777)
        stat_port = free_port()
        params = nginx.NginxParams(
            livestream="t/t",
            slot="main",
            work_dir=str(work),
            rtmp_listen=f"127.0.0.1:{free_port()}",
            stat_listen=f"127.0.0.1:{stat_port}",
            callback_base="http://127.0.0.1:9/internal/rtmp",
            idle_timeout_ms=3000,
            whip_listen=f"127.0.0.1:{free_port()}",
            whip_upstream="127.0.0.1:9",
            user=None,
        )
        conf = work / "nginx.conf"
        conf.write_text(nginx.render_nginx_conf(params))
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        subprocess.run(
            [*nobody, "mkdir", "-p", *(str(work / "tmp" / d) for d in nginx.TEMP_DIRS)], check=True, timeout=10
        )
        proc = subprocess.Popen(
            [*nobody, *nginx.nginx_argv(str(conf), str(work))], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            body = wait_for(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{stat_port}/stat", timeout=2).read(),
                10,
                what="nginx stats as nobody",
            )
            assert b"<rtmp>" in body
        finally:
            proc.terminate()
            out = proc.communicate(timeout=10)[0].decode()
        assert "Permission denied" not in out and "[emerg]" not in out, out
    finally:
        shutil.rmtree(work, ignore_errors=True)
