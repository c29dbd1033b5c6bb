"""RTMP and RTMPS ingest against the real agent: keys, one publisher, status, readers, odd input."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.media import FFMPEG, ffprobe_json, wait_for

pytestmark = pytest.mark.media


def _streams(info: dict) -> dict:
    return {s["codec_type"]: s for s in info["streams"]}


def _outcome_count(metrics: str, protocol: str, outcome: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("onair_ingest_publishes_total{") and f'outcome="{outcome}"' in line \
                and f'protocol="{protocol}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_rtmp_right_key_is_received_and_readable(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    pub = publishers.rtmp(ingest.rtmp_url, width=640, height=360, fps=30)
    st = ingest.wait_receiving()
    assert st["protocol"] == "rtmp"
    assert st["video"] == {"codec": "h264", "width": 640, "height": 360, "fps": 30.0}
    assert st["audio"] == {"codec": "aac", "channels": 2, "sampleRate": 48000}
    assert st["since"]
    kbps = wait_for(lambda: ingest.status().get("bitrateKbps"), 10, what="a bitrate")
    assert 100 < kbps < 20000
    streams = _streams(ffprobe_json(ingest.read_url))
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["width"] == 640
    assert streams["audio"]["codec_name"] == "aac"
    assert _outcome_count(ingest.metrics(), "rtmp", "accepted") == 1
    assert "onair_ingest_receiving{" in ingest.metrics()
    pub.stop()
    st = ingest.wait_receiving(False, timeout=10)
    assert st["protocol"] is None and st["video"] is None and st["bitrateKbps"] is None


def test_wrong_key_is_refused_and_never_logged(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    wrong = f"{ingest.stream_key}x"
    pub = publishers.rtmp(ingest.rtmp_url.replace(ingest.stream_key, wrong))
    assert pub.wait(15) != 0
    ingest.wait_log("wrong stream key")
    log = ingest.log_text()
    assert wrong not in log and ingest.stream_key not in log
    assert not ingest.status()["receiving"]
    assert _outcome_count(ingest.metrics(), "rtmp", "wrong_key") == 1


def test_second_publisher_is_refused_and_first_keeps_going(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    first = publishers.rtmp(ingest.rtmp_url)
    since = ingest.wait_receiving()["since"]
    second = publishers.rtmp(ingest.rtmp_url, width=320, height=240)
    assert second.wait(15) != 0
    ingest.wait_log("another rtmp publisher is already live")
    assert first.running
    st = ingest.status()
    assert st["receiving"] and st["since"] == since and st["video"]["width"] == 640
    assert _outcome_count(ingest.metrics(), "rtmp", "busy") == 1


def test_rtmps_publish_is_received_as_rtmps(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp", "rtmps"), with_tls=True)
    # ffmpeg's TLS client does not verify certificates unless told to, so the self-signed one is fine.
    publishers.rtmp(ingest.rtmps_url, width=320, height=240)
    st = ingest.wait_receiving()
    assert st["protocol"] == "rtmps" and st["video"]["width"] == 320
    assert _streams(ffprobe_json(ingest.read_url))["video"]["height"] == 240


def test_rtmps_wrong_key_is_refused(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp", "rtmps"), with_tls=True)
    pub = publishers.rtmp(ingest.rtmps_url.replace(ingest.stream_key, "nope"))
    assert pub.wait(15) != 0
    ingest.wait_log("refused rtmps publish from")
    assert "wrong stream key" in ingest.log_text()


def test_frozen_publisher_stops_receiving_and_is_dropped(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    pub = publishers.rtmp(ingest.rtmp_url)
    ingest.wait_receiving()
    pub.freeze()
    try:
        st = ingest.wait_receiving(False, timeout=10)
        # Frozen, not gone: until nginx drops it the slot is still held by this publisher.
        assert st["protocol"] in ("rtmp", None)
        ingest.wait_log("frozen encoder", timeout=15)
        wait_for(lambda: ingest.status()["protocol"] is None, 10, what="the frozen publisher to be dropped")
    finally:
        pub.thaw()
    # The slot is free again for a new publisher.
    publishers.rtmp(ingest.rtmp_url, width=320, height=240)
    assert ingest.wait_receiving()["video"]["width"] == 320


def test_publisher_killed_mid_stream_frees_the_slot(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    pub = publishers.rtmp(ingest.rtmp_url)
    ingest.wait_receiving()
    pub.kill()
    ingest.wait_receiving(False, timeout=10)
    publishers.rtmp(ingest.rtmp_url)
    ingest.wait_receiving()


def test_audio_only_publish_is_dropped_with_a_reason(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    pub = publishers.custom(["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                             "-c:a", "aac", "-b:a", "96k", "-f", "flv", ingest.rtmp_url])
    ingest.wait_log("no video arrived", timeout=20)
    assert pub.wait(15) != 0
    assert _outcome_count(ingest.metrics(), "rtmp", "no_video") == 1
    ingest.wait_receiving(False, timeout=5)


@pytest.fixture(scope="module")
def clip_4k60(tmp_path_factory) -> Path:
    """Two seconds of flat 4K60 H.264 + AAC: cheap to make, and copied (not encoded) when pushed."""
    path = tmp_path_factory.mktemp("media") / "4k60.flv"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=navy:size=3840x2160:rate=60", "-f", "lavfi", "-i", "sine=sample_rate=48000",
                    "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60",
                    "-c:a", "aac", "-shortest", str(path)], check=True, timeout=120)
    return path


def test_4k60_publish_is_reported_truthfully(ingest_agent, publishers, clip_4k60):
    ingest = ingest_agent.start(protocols=("rtmp",))
    publishers.custom(["-re", "-stream_loop", "-1", "-i", str(clip_4k60), "-c", "copy", "-f", "flv",
                       ingest.rtmp_url])
    st = ingest.wait_receiving()
    assert st["video"] == {"codec": "h264", "width": 3840, "height": 2160, "fps": 60.0}
    assert _streams(ffprobe_json(ingest.read_url))["video"]["width"] == 3840
    time.sleep(1)
    assert ingest.running and ingest.status()["receiving"]
