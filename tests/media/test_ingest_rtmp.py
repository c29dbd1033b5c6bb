"""RTMP and RTMPS ingest against the real agent: keys, one publisher, status, readers."""
from __future__ import annotations

import pytest

from tests.fixtures.media import ffprobe_json, wait_for

pytestmark = pytest.mark.media


def _streams(info: dict) -> dict:
    return {s["codec_type"]: s for s in info["streams"]}


def test_rtmp_right_key_is_received_and_readable(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    pub = publishers.rtmp(ingest.rtmp_url, width=640, height=360, fps=30)
    st = ingest.wait_receiving()
    assert st["protocol"] == "rtmp"
    assert st["video"] == {"codec": "h264", "width": 640, "height": 360, "fps": 30.0}
    assert st["audio"]["codec"] == "aac" and st["audio"]["sampleRate"] == 48000 and st["audio"]["channels"] == 2
    assert st["since"]
    wait_for(lambda: ingest.status().get("bitrateKbps"), 10, what="a bitrate")
    streams = _streams(ffprobe_json(ingest.read_url))
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["width"] == 640
    assert streams["audio"]["codec_name"] == "aac"
    assert 'outcome="accepted",protocol="rtmp"' in ingest.metrics()
    pub.stop()
    ingest.wait_receiving(False, timeout=10)
    assert ingest.status().get("protocol") is None
