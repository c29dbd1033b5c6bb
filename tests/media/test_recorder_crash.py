"""A recorder SIGKILLed mid-recording leaves a playable file, and the next one finalizes it."""

from __future__ import annotations

import subprocess

import pytest

from tests.fixtures.media import FFPROBE, wait_for

pytestmark = [pytest.mark.media, pytest.mark.timeout(150)]


def decoded_video_frames(path) -> list[float]:
    """Decode every video frame (not just read the headers); their timestamps in seconds."""
    out = subprocess.run(
        [
            FFPROBE,
            "-v",
            "quiet",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=best_effort_timestamp_time",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [float(line.strip().strip(",")) for line in out.stdout.splitlines() if line.strip().strip(",")]


def test_sigkill_mid_recording_leaves_a_playable_file_that_the_next_recorder_finalizes(
    rtmp_source, recorder_agent, publishers
):
    publisher = publishers.rtmp(rtmp_source.publish_url, fps=30)
    recorder = recorder_agent.start(rtmp_source.read_url, split_seconds=3600)
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["durationSeconds"] >= 8, 40, "8 s recorded")
    assert recorder.ffmpeg_pids(), "the recording ffmpeg is the agent's child"

    recorded = recorder.status()["durationSeconds"]
    recorder.kill_everything()

    files = sorted(recorder.output_dir.glob("*.mp4"))
    assert len(files) == 1
    assert not list(recorder.output_dir.glob("*.json")), "a killed recorder had no chance to finalize"
    frames = decoded_video_frames(files[0])
    decoded = frames[-1] + 1 / 30
    print(f"recorded {recorded:.2f}s before SIGKILL, {decoded:.2f}s decodable ({len(frames)} frames)")
    # Lost: the half-second fragment still in ffmpeg's memory (plus what it had read but not yet
    # muxed); the progress report itself lags by up to a second, hence the upper bound.
    assert recorded - 1.2 <= decoded <= recorded + 1.5, (recorded, decoded)
    assert len(frames) >= 0.8 * 30 * decoded, "the frames in between decode too"

    # The next recorder on the same volume finds the session without a sidecar and closes it.
    successor = recorder_agent.start(rtmp_source.read_url, output_dir=recorder.output_dir)
    sidecar = wait_for(lambda: successor.sidecars(), 30, what="recovered sidecar")[0]
    assert sidecar["recovered"] is True
    assert [p["file"] for p in sidecar["parts"]] == [files[0].name]
    assert abs(sidecar["durationSeconds"] - decoded) < 1.5
    assert files[0].exists(), "recordings are never deleted"
    assert publisher.running
