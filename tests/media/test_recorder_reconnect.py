"""A dropped stream: back within finalizeAfterSeconds = same session; gone longer = finalized."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.media import ffprobe_json, wait_for

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(200)]


def test_short_drop_continues_the_session_long_drop_finalizes_it(rtmp_source, recorder_agent, publishers):
    recorder = recorder_agent.start(rtmp_source.read_url, finalize_after_seconds=8, stall_timeout_seconds=3)
    recorder.put_desired(recording=True)

    first = publishers.rtmp(rtmp_source.publish_url)
    live = recorder.wait_status(lambda s: s["durationSeconds"] >= 4, 40, "4 s recorded")
    session_start = live["startedAt"]
    first.stop()
    recorder.wait_status(lambda s: s["state"] == "reconnecting" and not s["recording"], 15, "the drop to be noticed")
    recorder.wait_log("unless the stream comes back", 10)

    # Back well within the 8 s window: same session, a new part.
    time.sleep(1)
    second = publishers.rtmp(rtmp_source.publish_url)
    resumed = recorder.wait_status(lambda s: s["recording"] and len(s["files"]) == 2, 30, "recording to resume")
    assert resumed["startedAt"] == session_start
    assert not recorder.sidecars(), "a short drop must not finalize"
    recorder.wait_status(lambda s: s["durationSeconds"] >= resumed["durationSeconds"] + 3, 30, "3 more seconds")
    duration_before_drop = recorder.status()["durationSeconds"]
    assert duration_before_drop > 7, "the session's duration counts both parts"

    # Gone for longer than the window: the session is closed with its sidecar.
    second.stop()
    sidecar = wait_for(lambda: recorder.sidecars(), 30, what="the session to be finalized")[0]
    assert sidecar["endReason"].startswith("source gone")
    assert [p["file"] for p in sidecar["parts"]] == resumed["files"]
    assert sidecar["durationSeconds"] == pytest.approx(duration_before_drop, abs=2.5)
    after = recorder.wait_status(lambda s: s["state"] == "waiting", 20, "waiting for the next broadcast")
    assert after["durationSeconds"] == 0 and after["startedAt"] is None
    for name in resumed["files"]:
        assert float(ffprobe_json(str(recorder.output_dir / name))["format"]["duration"]) > 2

    # The next broadcast is a new session with its own start time.
    publishers.rtmp(rtmp_source.publish_url)
    new = recorder.wait_status(lambda s: s["recording"], 30, "a new session")
    assert new["startedAt"] != session_start
    prefixes = {name.rsplit("_part", 1)[0] for name in new["files"]}
    assert len(prefixes) == 2
