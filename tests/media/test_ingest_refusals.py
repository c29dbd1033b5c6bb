"""Every publish the ingest refuses or drops is recorded with its reason (``/status`` refusals,
``onair_ingest_refusals_total``) so the operator can tell the owner; what the pipeline can use
after a conversion (HEVC video or MP2 audio over SRT) is accepted instead.

Real agent, nginx-rtmp, srt-live-transmit and ffmpeg publishers on 127.0.0.1.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Optional

import pytest

from tests.fixtures.ingest import WhipPublisher
from tests.fixtures.media import ffprobe_json, wait_for

pytestmark = pytest.mark.media


def refusal(status: dict, reason: str, protocol: str) -> Optional[dict]:
    for entry in status.get("refusals") or ():
        if entry["reason"] == reason and entry["protocol"] == protocol:
            return entry
    return None


def wait_refusal(ingest, reason: str, protocol: str, count: int = 1, timeout: float = 25) -> dict:
    def check() -> Optional[dict]:
        entry = refusal(ingest.status(), reason, protocol)
        return entry if entry and entry["count"] >= count else None
    try:
        return wait_for(check, timeout, interval=0.25, what=f"a {protocol} refusal {reason!r} in /status")
    except TimeoutError:
        print("status:", ingest.status(), "\nagent log:\n", ingest.log_tail())
        raise


def refusal_metric(metrics: str, reason: str, protocol: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("onair_ingest_refusals_total{") and f'reason="{reason}"' in line \
                and f'protocol="{protocol}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def watch_receiving(ingest, publisher, seconds: float) -> list[dict]:
    """Every /status seen while ``publisher`` runs (at most ``seconds``)."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and publisher.running:
        seen.append(ingest.status())
        time.sleep(0.2)
    return seen


def test_wrong_rtmp_key_is_recorded_without_the_key(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    wrong = f"{ingest.stream_key}x"
    for _ in range(2):
        assert publishers.rtmp(ingest.rtmp_url.replace(ingest.stream_key, wrong), width=320, height=240).wait(15) != 0
    entry = wait_refusal(ingest, "wrong_key", "rtmp", count=2)
    assert entry["lastAddress"] == "127.0.0.1"
    assert entry["message"] == "wrong stream key"
    assert entry["firstAt"] <= entry["lastAt"]
    raw = json.dumps(ingest.status())
    assert wrong not in raw and ingest.stream_key not in raw
    assert refusal_metric(ingest.metrics(), "wrong_key", "rtmp") == 2


def test_srt_wrong_passphrase_is_recorded(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("srt",))
    pub = publishers.srt(ingest.srt_url.replace(ingest.srt_passphrase, "wrong-passphrase-123"), width=320, height=240)
    assert pub.wait(20) != 0
    entry = wait_refusal(ingest, "wrong_key", "srt")
    assert entry["lastAddress"] == "127.0.0.1" and "passphrase" in entry["message"]
    assert ingest.srt_passphrase not in json.dumps(ingest.status())
    assert refusal_metric(ingest.metrics(), "wrong_key", "srt") == 1


@pytest.mark.parametrize("protocol", ["rtmp", "srt"])
def test_inactive_slot_records_the_refusal(ingest_agent, publishers, protocol):
    # Also over SRT: the listener stays up while inactive so the caller is told (hung up on)
    # and the owner learns that someone pushes to a switched-off stream.
    ingest = ingest_agent.start(protocols=(protocol,), active=False)
    url = ingest.rtmp_url if protocol == "rtmp" else ingest.srt_url
    pub = getattr(publishers, protocol)(url, width=320, height=240)
    assert pub.wait(30) != 0
    entry = wait_refusal(ingest, "inactive", protocol)
    assert "not active" in entry["message"] and entry["lastAddress"] == "127.0.0.1"
    assert not ingest.status()["receiving"]


def test_ended_livestream_refuses_with_its_own_reason(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp", "whip"))
    ingest.put_desired(phase="ended", active=False)  # what the operator sends once ended
    assert publishers.rtmp(ingest.rtmp_url, width=320, height=240).wait(15) != 0
    entry = wait_refusal(ingest, "ended", "rtmp")
    assert "ended" in entry["message"]
    assert refusal(ingest.status(), "inactive", "rtmp") is None
    client = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
    client.stop()
    assert client.status == 403 and json.loads(client.body)["reason"] == "ended"


def test_second_protocol_and_second_publisher_are_recorded(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp", "srt"))
    publishers.rtmp(ingest.rtmp_url, width=320, height=240)
    ingest.wait_receiving()
    assert publishers.srt(ingest.srt_url, width=320, height=240).wait(30) != 0
    entry = wait_refusal(ingest, "other_protocol_live", "srt")
    assert "rtmp is already live" in entry["message"] and entry["lastAddress"] == "127.0.0.1"
    assert publishers.rtmp(ingest.rtmp_url, width=320, height=240).wait(15) != 0
    wait_refusal(ingest, "busy", "rtmp")
    assert ingest.status()["protocol"] == "rtmp"


@pytest.mark.parametrize("protocol", ["rtmp", "srt"])
def test_audio_only_publish_is_never_live_and_is_refused(ingest_agent, publishers, protocol):
    ingest = ingest_agent.start(protocols=(protocol,))
    url = ingest.rtmp_url if protocol == "rtmp" else ingest.srt_url
    fmt = "flv" if protocol == "rtmp" else "mpegts"
    pub = publishers.custom(["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                             "-c:a", "aac", "-b:a", "96k", "-f", fmt, url])
    seen = watch_receiving(ingest, pub, 30)
    assert pub.wait(15) != 0, "the audio-only publisher must be dropped"
    assert not [st for st in seen if st["receiving"]], "an audio-only publish was reported as receiving"
    entry = wait_refusal(ingest, "no_video", protocol)
    assert "no video" in entry["message"]
    assert refusal_metric(ingest.metrics(), "no_video", protocol) == 1


@pytest.mark.parametrize("codec_args, what", [
    (["-c:v", "flv", "-q:v", "5", "-c:a", "aac"], "video codec sorenson-h263"),
    (["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "nellymoser", "-ar", "44100", "-ac", "1"],
     "audio codec nellymoser"),
], ids=["sorenson-video", "nellymoser-audio"])
def test_rtmp_codec_the_pipeline_cannot_use_is_refused(ingest_agent, publishers, codec_args, what):
    ingest = ingest_agent.start(protocols=("rtmp",))
    pub = publishers.custom(["-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                             "-re", "-f", "lavfi", "-i", "sine=sample_rate=44100", *codec_args,
                             "-f", "flv", ingest.rtmp_url])
    seen = watch_receiving(ingest, pub, 30)
    assert pub.wait(15) != 0, "the publisher must be dropped"
    assert not [st for st in seen if st["receiving"]], "a publish that gets dropped was reported as receiving"
    entry = wait_refusal(ingest, "unsupported_codec", "rtmp")
    assert what in entry["message"] and "H.264" in entry["message"]


@pytest.mark.parametrize("video, audio", [
    (["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25"], ["-c:a", "aac"]),
    (["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"], ["-c:a", "mp2"]),
], ids=["hevc-aac", "h264-mp2"])
def test_srt_codecs_flv_cannot_carry_are_converted(ingest_agent, publishers, video, audio):
    ingest = ingest_agent.start(protocols=("srt",))
    publishers.custom(["-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                       "-re", "-f", "lavfi", "-i", "sine=sample_rate=48000", *video, *audio,
                       "-f", "mpegts", ingest.srt_url])
    try:
        st = ingest.wait_receiving(timeout=40)
    except TimeoutError:
        print("agent log:\n", ingest.log_tail())
        raise
    assert st["protocol"] == "srt"
    assert st["video"]["codec"] == "h264" and st["video"]["width"] == 320
    assert st["audio"]["codec"] == "aac"
    streams = {s["codec_type"]: s for s in ffprobe_json(ingest.read_url)["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert not ingest.status()["refusals"]


def test_whip_refusals_answer_json_and_are_recorded(ingest_agent):
    ingest = ingest_agent.start(protocols=("whip",))
    client = WhipPublisher(ingest.whip_url, "wrong-token").start()
    client.stop()
    assert client.status == 401
    body = json.loads(client.body)
    assert body["reason"] == "wrong_key" and "bearer token" in body["error"]
    entry = wait_refusal(ingest, "wrong_key", "whip")
    assert entry["lastAddress"] == "127.0.0.1" and "wrong-token" not in json.dumps(ingest.status())

    client = WhipPublisher(ingest.whip_url, ingest.whip_token, video_codec="vp8").start()
    client.stop()
    assert client.status == 406 and json.loads(client.body)["reason"] == "unsupported_codec"
    wait_refusal(ingest, "unsupported_codec", "whip")

    client = WhipPublisher(ingest.whip_url, ingest.whip_token, video_codec=None).start()
    client.stop()
    assert client.status == 406 and json.loads(client.body)["reason"] == "no_video"
    wait_refusal(ingest, "no_video", "whip")
    assert refusal_metric(ingest.metrics(), "no_video", "whip") == 1

    # Gcore's WHIP contract: "both tracks must be present".
    client = WhipPublisher(ingest.whip_url, ingest.whip_token, audio_codec=None).start()
    client.stop()
    assert client.status == 406 and json.loads(client.body)["reason"] == "no_audio"
    wait_refusal(ingest, "no_audio", "whip")

    request = urllib.request.Request(ingest.whip_url, data=b"v=0", method="POST", headers={
        "Authorization": f"Bearer {ingest.whip_token}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 415 and "application/sdp" in json.loads(err.value.read())["error"]
