"""Pull mode: URIs tried round-robin until one delivers; RTMP, SRT and HLS sources."""
from __future__ import annotations

import subprocess
import sys

import m3u8
import pytest

from tests.fixtures.media import free_port, wait_for

pytestmark = [pytest.mark.media, pytest.mark.timeout(150)]


def _pull(tx, rung="180p"):
    tx.wait_status(lambda s: s.get("activeSource") == "pull", 40, "pull source selected")
    tx.put_desired(phase="live", broadcasting=True)
    path = tx.wait_file(f"hls/cmaf/{rung}/index.m3u8", 40)
    wait_for(lambda: len(m3u8.loads(path.read_text()).segments) >= 2, 30, what="two segments")
    return tx.wait_status(lambda s: s.get("qualities") == [rung], 10, "qualities")


@pytest.mark.slow
def test_dead_first_uri_then_rtmp(rtmp_server, publishers, transcoder_agent):
    dead = f"rtmp://127.0.0.1:{free_port()}/live/nobody"
    publishers.rtmp(rtmp_server.url("pulled"), width=320, height=180)
    tx = transcoder_agent.start(pull_uris=[dead, rtmp_server.url("pulled")], tracks=["180p"], source_size=(320, 180),
                                hls_mpegts=False, dash=False, screenshot_interval_seconds=0)
    status = _pull(tx)
    assert status["broadcasting"] and status["activeSource"] == "pull"
    log = tx.log_text()
    assert f"pull source {dead} ended" in log and f"trying {rtmp_server.url('pulled')}" in log


@pytest.mark.slow
def test_dead_first_uri_then_srt_with_passphrase_kept_out_of_the_log(publishers, transcoder_agent):
    import socket

    port = free_port(socket.SOCK_DGRAM)
    passphrase = "pull-passphrase-123"
    # srt-live-transmit keeps listening when a caller leaves (an ffmpeg listener would exit).
    relay_in = free_port(socket.SOCK_DGRAM)
    slt = subprocess.Popen(["srt-live-transmit", f"udp://127.0.0.1:{relay_in}",
                            f"srt://127.0.0.1:{port}?mode=listener&passphrase={passphrase}&latency=200"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        publishers.custom(["-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
                           "-re", "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
                           "-c:a", "aac", "-f", "mpegts", f"udp://127.0.0.1:{relay_in}?pkt_size=1316"])
        dead = f"srt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}?mode=caller&connect_timeout=1000"
        live = f"srt://127.0.0.1:{port}?mode=caller&passphrase={passphrase}&latency=200000"
        tx = transcoder_agent.start(pull_uris=[dead, live], tracks=["180p"], source_size=(320, 180),
                                    hls_mpegts=False, dash=False, screenshot_interval_seconds=0)
        _pull(tx)
        assert passphrase not in tx.log_text()
    finally:
        slt.kill()
        slt.wait(5)


@pytest.mark.slow
def test_hls_pull(publishers, transcoder_agent, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    publishers.custom(["-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
                       "-re", "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
                       "-c:a", "aac", "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
                       "-hls_flags", "delete_segments+temp_file", str(served / "live.m3u8")])
    port = free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(served)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(lambda: (served / "live.m3u8").exists(), 20, what="the HLS source")
        dead = f"http://127.0.0.1:{free_port()}/nothing.m3u8"
        tx = transcoder_agent.start(pull_uris=[dead, f"http://127.0.0.1:{port}/live.m3u8"], tracks=["180p"],
                                    source_size=(320, 180), hls_mpegts=False, dash=False, screenshot_interval_seconds=0)
        _pull(tx)
    finally:
        http.kill()
        http.wait(5)


@pytest.mark.slow
def test_inactive_or_ended_pulls_nothing_and_active_pulls_again(rtmp_server, publishers, transcoder_agent):
    """Gcore: "When false, PULL is deactivated"; an ended stream pulls nothing either."""
    source = rtmp_server.url("pulled")
    publishers.rtmp(source, width=320, height=180)
    tx = transcoder_agent.start(pull_uris=[source], tracks=["180p"], source_size=(320, 180),
                                hls_mpegts=False, dash=False, screenshot_interval_seconds=0)
    _pull(tx)

    # What the operator PUTs for spec.active: false (broadcasting is never desired then).
    tx.put_desired(active=False, broadcasting=False)
    tx.wait_status(lambda s: s.get("activeSource") is None and not s["broadcasting"], 20, "not pulling")
    wait_for(lambda: tx.reader_pid(source) is None, 10, what="the pull reader stopped")
    wait_for(lambda: "active is false" in tx.log_text(), 5, what="the reason in the log")

    tx.put_desired(active=True)
    _pull(tx)

    # Ended: the operator sends active false too, but the phase alone must stop the pull.
    tx.put_desired(phase="ended", active=True, broadcasting=True)
    tx.wait_status(lambda s: s.get("activeSource") is None and not s["broadcasting"], 20, "not pulling once ended")
    wait_for(lambda: tx.reader_pid(source) is None, 10, what="the pull reader stopped")
    assert tx.encoder_pid() is None
