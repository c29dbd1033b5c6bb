"""Recording the origin's HLS (recordType transcoded): the top rung, copied, not re-encoded."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.media import ffprobe_json, wait_for

pytestmark = [pytest.mark.media, pytest.mark.timeout(150)]


def test_transcoded_recording_copies_the_top_rung_and_never_rerecords_a_stale_playlist(hls_source, recorder_agent):
    recorder = recorder_agent.start(
        hls_source.master_url,
        record_type="transcoded",
        split_seconds=4,
        finalize_after_seconds=4,
        stall_timeout_seconds=4,
    )
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["state"] == "waiting", 20, "waiting while the playlist does not exist")
    recorder.wait_log("playlist answered HTTP 404", 20)

    hls_source.start()
    wait_for(hls_source.playable, 30, what="the ladder's playlists")
    recorder.wait_status(lambda s: s["recording"], 40, "recording to start")
    recorder.wait_status(lambda s: s["durationSeconds"] >= 7, 40, "7 s recorded")

    # The encoder dies: its playlists stay up, stale. The session ends; nothing is recorded twice.
    hls_source.kill()
    sidecar = wait_for(lambda: recorder.sidecars(), 40, what="the session to be finalized")[0]
    files = [p["file"] for p in sidecar["parts"]]
    recorder.wait_log("no new segment since the last recording", 20)
    time.sleep(5)
    after = recorder.status()
    assert after["state"] == "waiting" and after["files"] == files, "a stale playlist is not a live source"

    assert len(files) >= 2, "split every 4 s"
    for name in files:
        info = ffprobe_json(str(recorder.output_dir / name))
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert (video["width"], video["height"]) == (640, 360), "the top rung, not the 180p one"
        # x264 ultrafast encodes Constrained Baseline; a re-encode would default to High.
        assert video["codec_name"] == "h264" and video.get("profile") == "Constrained Baseline"
        assert any(s["codec_type"] == "audio" and s["codec_name"] == "aac" for s in info["streams"])
    assert sidecar["recordType"] == "transcoded"
    assert sidecar["durationSeconds"] >= 6
