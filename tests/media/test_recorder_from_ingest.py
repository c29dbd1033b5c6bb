"""The recorder against the real ingest agent: what production wires together for recordType origin."""

from __future__ import annotations

import pytest

from tests.fixtures.media import ffprobe_json, wait_for

pytestmark = [pytest.mark.media, pytest.mark.timeout(180)]


def test_records_the_ingest_read_url_and_finalizes_when_the_agent_is_stopped(ingest_agent, recorder_agent, publishers):
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    # Wired as the operator renders it: the URL without the token, the token in a mounted file.
    recorder = recorder_agent.start(
        ingest.anonymous_read_url, split_seconds=4, read_token_file=ingest.config.read_token_file
    )
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["state"] == "waiting", 20, "waiting for a publisher")

    publisher = publishers.rtmp(ingest.rtmp_url)
    ingest.wait_receiving()
    recorder.wait_status(lambda s: s["recording"], 30, "recording to start")
    status = recorder.wait_status(lambda s: s["durationSeconds"] >= 6 and len(s["files"]) >= 2, 40, "two parts")

    # Kubernetes stops the pod with SIGTERM: the open session is finalized, nothing is left running.
    assert recorder.stop(timeout=30) == 0
    assert not recorder.ffmpeg_pids()
    sidecar = wait_for(lambda: recorder.sidecars(), 5, what="sidecar")[0]
    assert sidecar["endReason"] == "agent stopped"
    assert [p["file"] for p in sidecar["parts"]] == sorted(p.name for p in recorder.output_dir.glob("*.mp4"))
    assert sidecar["durationSeconds"] >= status["durationSeconds"] - 1
    for part in sidecar["parts"]:
        info = ffprobe_json(str(recorder.output_dir / part["file"]))
        assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
    assert publisher.running and ingest.status()["receiving"], "the recorder going away does not touch the stream"
    assert ingest.read_token not in recorder.log_text()
    assert "accepted play from 127.0.0.1" in ingest.log_text() and "refused play" not in ingest.log_text()


@pytest.mark.parametrize("audio", [True, False], ids=["audio", "video-only"])
def test_a_low_frame_rate_publisher_is_recorded_by_the_first_run(ingest_agent, recorder_agent, publishers, audio):
    # ffmpeg's default probing of a 10 fps FLV takes about 4 s (frame-rate estimation), and
    # twice that without audio (it waits for the announced audio stream): longer than the
    # fixture's 3 s stall timeout, so every run used to be killed while probing, forever.
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    publishers.rtmp(ingest.rtmp_url, width=320, height=180, fps=10, audio=audio)
    ingest.wait_receiving()
    recorder = recorder_agent.start(ingest.read_url)
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["durationSeconds"] >= 3, 30, "3 s recorded")
    log = recorder.log_text()
    assert "is not live" not in log and "Immediate exit requested" not in log, log[-3000:]

    recorder.put_desired(recording=False)
    [name] = recorder.wait_status(lambda s: s["state"] == "idle", 30, "recording to stop")["files"]
    info = ffprobe_json(str(recorder.output_dir / name))
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (320, 180)
    assert any(s["codec_type"] == "audio" for s in info["streams"]) is audio
