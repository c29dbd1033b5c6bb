"""Recording the ingest's RTMP (recordType origin): idle until live, split parts, sidecar on stop."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.fixtures.media import FFPROBE, ffprobe_json

pytestmark = [pytest.mark.media, pytest.mark.timeout(150)]

PART = re.compile(r"^default_show_(\d{8}T\d{6}Z)_part(\d{4})\.mp4$")


def video_frames(path) -> int:
    out = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "default=nw=1:nk=1",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(out.stdout.strip().splitlines()[0])


def test_waits_for_the_source_then_records_split_parts_and_finalizes_on_stop(rtmp_source, recorder_agent, publishers):
    recorder = recorder_agent.start(rtmp_source.read_url, split_seconds=5)
    assert recorder.status()["state"] == "idle"

    recorder.put_desired(recording=True)
    waiting = recorder.wait_status(lambda s: s["state"] == "waiting", 20, "recorder waiting for the source")
    assert waiting["recording"] is False and waiting["durationSeconds"] == 0
    recorder.wait_log("is not live", 20)
    assert not list(recorder.output_dir.glob("*.mp4")), "nothing may be written before the source is live"

    publisher = publishers.rtmp(rtmp_source.publish_url)
    live = recorder.wait_status(lambda s: s["recording"], 30, "recording to start once the source is live")
    assert live["state"] == "recording" and live["startedAt"]

    status = recorder.wait_status(lambda s: s["durationSeconds"] >= 12, 40, "12 s recorded")
    assert 'onair_recorder_recording{livestream="default/show"} 1.0' in recorder.metrics()
    recorder.put_desired(recording=False)
    idle = recorder.wait_status(lambda s: s["state"] == "idle" and not s["recording"], 30, "recording to stop")
    assert idle["durationSeconds"] == 0
    assert publisher.running, "stopping the recording must not touch the stream"

    files = idle["files"]
    assert len(files) >= 3, files
    matches = [PART.match(name) for name in files]
    assert all(matches), files
    assert len({m[1] for m in matches}) == 1, "one session, one start time"
    assert [int(m[2]) for m in matches] == list(range(1, len(files) + 1))
    assert files == sorted(files)

    source = ffprobe_json(rtmp_source.read_url, timeout=20)
    source_video = next(s for s in source["streams"] if s["codec_type"] == "video")
    total = 0.0
    for index, name in enumerate(files):
        info = ffprobe_json(str(recorder.output_dir / name))
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert any(s["codec_type"] == "audio" and s["codec_name"] == "aac" for s in info["streams"])
        # Stream copy: same codec, size and profile as the publisher sent (x264 re-encodes default to High).
        assert (video["codec_name"], video["width"], video["height"], video.get("profile")) == (
            source_video["codec_name"],
            source_video["width"],
            source_video["height"],
            source_video.get("profile"),
        )
        duration = float(info["format"]["duration"])
        total += duration
        if index < len(files) - 1:
            assert 4.5 <= duration <= 6.5, (name, duration)
        assert video_frames(recorder.output_dir / name) >= 25 * min(duration, 5) * 0.9

    sidecars = recorder.sidecars()
    assert len(sidecars) == 1
    sidecar = sidecars[0]
    assert (recorder.output_dir / f"default_show_{matches[0][1]}.json").exists()
    assert sidecar["livestream"] == "default/show" and sidecar["recordType"] == "origin"
    assert sidecar["endReason"] == "recording stopped"
    assert [p["file"] for p in sidecar["parts"]] == files
    assert sidecar["startedAt"] < sidecar["endedAt"]
    assert abs(sidecar["durationSeconds"] - total) < 0.5
    assert abs(sidecar["durationSeconds"] - status["durationSeconds"]) < 6
    assert all(p["bytes"] > 0 for p in sidecar["parts"])
