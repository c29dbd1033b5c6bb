"""A full recordings volume pauses the recording (agent and stream unharmed) until space is back.

The volume is a real 4 MiB tmpfs (the tests run as root in this sandbox; without the privilege
to mount one the test skips, saying so).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.media import ffprobe_json

pytestmark = [pytest.mark.media, pytest.mark.timeout(180)]


@pytest.fixture
def small_volume(tmp_path: Path):
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(volume)], capture_output=True, text=True, timeout=10
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); needs root")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], capture_output=True, timeout=10)


def fill(volume: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about ``leave_bytes`` free on the volume."""
    stats = os.statvfs(volume)
    free = stats.f_bavail * stats.f_frsize
    filler = volume / "filler.bin"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))
    return filler


def test_disk_full_is_reported_and_recording_resumes_when_space_is_freed(
    small_volume, rtmp_source, recorder_agent, publishers
):
    filler = fill(small_volume, leave_bytes=1024 * 1024)
    publisher = publishers.rtmp(rtmp_source.publish_url, extra=["-b:v", "1200k"])
    recorder = recorder_agent.start(
        rtmp_source.read_url, output_dir=small_volume / "recordings", split_seconds=3600, min_free_bytes=64 * 1024
    )
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["recording"], 30, "recording to start")

    full = recorder.wait_status(lambda s: s["state"] == "disk_full", 40, "the volume to fill up")
    assert "full" in full["error"] and str(small_volume / "recordings") in full["error"]
    assert full["recording"] is False
    assert full["startedAt"], "the session stays open while paused for space"
    assert 'onair_recorder_error{livestream="default/show"} 1.0' in recorder.metrics()
    recorder.wait_log("No space left on device", 10)
    assert recorder.healthy() and recorder.running, "a full disk must not take the agent down"
    assert publisher.running, "nor the stream"
    paused_files = full["files"]
    assert len(paused_files) == 1
    # What was written before the disk filled stays playable.
    assert float(ffprobe_json(str(recorder.output_dir / paused_files[0]))["format"]["duration"]) > 1

    filler.unlink()  # the operator's job in real life: free space (the recorder never deletes)
    resumed = recorder.wait_status(lambda s: s["recording"] and s["error"] is None, 30, "recording to resume")
    assert resumed["startedAt"] == full["startedAt"], "same session, continued in a new part"
    assert len(resumed["files"]) == 2 and resumed["files"][0] == paused_files[0]
    recorder.wait_status(lambda s: s["durationSeconds"] >= full["durationSeconds"] + 2, 30, "2 more seconds")

    recorder.put_desired(recording=False)
    recorder.wait_status(lambda s: s["state"] == "idle", 30, "recording to stop")
    sidecar = recorder.sidecars()[0]
    assert [p["file"] for p in sidecar["parts"]] == resumed["files"]
    assert publisher.running


def test_read_only_volume_is_an_error_in_status_until_it_becomes_writable(
    tmp_path, rtmp_source, recorder_agent, publishers
):
    volume = tmp_path / "ro-volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,ro", "tmpfs", str(volume)], capture_output=True, text=True, timeout=10
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); needs root")
    try:
        publishers.rtmp(rtmp_source.publish_url)
        recorder = recorder_agent.start(rtmp_source.read_url, output_dir=volume)
        recorder.put_desired(recording=True)
        broken = recorder.wait_status(lambda s: s["state"] == "error", 20, "the read-only volume to be reported")
        assert "not writable" in broken["error"] and not broken["recording"]
        assert recorder.healthy()

        subprocess.run(["mount", "-o", "remount,rw", str(volume)], check=True, timeout=10)
        recorder.wait_status(lambda s: s["recording"] and s["error"] is None, 30, "recording once writable")
    finally:
        subprocess.run(["umount", "-l", str(volume)], capture_output=True, timeout=10)
