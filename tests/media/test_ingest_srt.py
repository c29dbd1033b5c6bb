"""SRT ingest: passphrase, callers that leave and come back, one protocol at a time."""

from __future__ import annotations

import pytest

from tests.fixtures.media import ffprobe_json, wait_for

pytestmark = pytest.mark.media


def test_srt_publish_is_received_and_survives_reconnects(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("srt",))
    first = publishers.srt(ingest.srt_url, width=640, height=360)
    st = ingest.wait_receiving()
    assert st["protocol"] == "srt"
    assert st["video"]["codec"] == "h264" and (st["video"]["width"], st["video"]["height"]) == (640, 360)
    assert st["audio"]["codec"] == "aac"
    streams = {s["codec_type"]: s for s in ffprobe_json(ingest.read_url)["streams"]}
    assert streams["video"]["width"] == 640 and streams["audio"]["codec_name"] == "aac"
    first.stop()
    ingest.wait_receiving(False, timeout=10)
    ingest.wait_log("SRT caller 127.0.0.1")
    # The caller comes back (new MPEG-TS timestamps, new size): the same listener takes it.
    second = publishers.srt(ingest.srt_url, width=320, height=240)
    assert ingest.wait_receiving()["video"]["width"] == 320
    assert second.running


def test_wrong_passphrase_is_refused(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("srt",))
    pub = publishers.srt(ingest.srt_url.replace(ingest.srt_passphrase, "wrong-passphrase-123"))
    assert pub.wait(20) != 0
    ingest.wait_log("refused srt publish from 127.0.0.1")
    assert "wrong passphrase" in ingest.log_text()
    assert ingest.srt_passphrase not in ingest.log_text()
    assert not ingest.status()["receiving"]
    # The listener is still there for the right passphrase.
    publishers.srt(ingest.srt_url)
    assert ingest.wait_receiving()["protocol"] == "srt"


def test_srt_while_rtmp_is_live_is_refused_and_vice_versa(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp", "srt"))
    rtmp = publishers.rtmp(ingest.rtmp_url)
    ingest.wait_receiving()
    srt = publishers.srt(ingest.srt_url, width=320, height=240)
    assert srt.wait(30) != 0  # the agent hangs up on the SRT caller
    ingest.wait_log(
        "refused srt publish from 127.0.0.1: rtmp is already live on this slot (only one protocol at a time)"
    )
    assert rtmp.running and ingest.status()["protocol"] == "rtmp"
    rtmp.stop()
    ingest.wait_receiving(False, timeout=10)
    publishers.srt(ingest.srt_url, width=320, height=240)
    assert ingest.wait_receiving()["protocol"] == "srt"
    late = publishers.rtmp(ingest.rtmp_url)
    assert late.wait(15) != 0
    ingest.wait_log("refused rtmp publish from 127.0.0.1: srt is already live on this slot")
    wait_for(lambda: ingest.status()["protocol"] == "srt", 5, what="srt still live")


def test_a_second_srt_caller_is_rejected_in_the_handshake_and_told_why(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("srt",))
    first = publishers.srt(ingest.srt_url, width=320, height=240)
    ingest.wait_receiving()
    second = publishers.srt(ingest.srt_url, width=320, height=240)
    assert second.wait(20) != 0
    ingest.wait_log("refused srt publish from 127.0.0.1: another srt publisher is already live on this slot")
    assert first.running and ingest.status()["receiving"]
