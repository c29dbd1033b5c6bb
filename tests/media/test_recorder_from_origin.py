"""recordType transcoded against the real origin agent: its CMAF ladder, its backstage gate."""

from __future__ import annotations

import pytest

from tests.fixtures.media import ffprobe_json
from tests.fixtures.origin import origins, transcoders  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.media, pytest.mark.timeout(180)]


def test_records_the_top_cmaf_rung_once_the_origin_lets_viewers_in(origins, transcoders, recorder_agent):
    origin = origins.start()  # backstage: playback needs a token
    transcoders.start(origin)
    recorder = recorder_agent.start(origin.url("hls/cmaf/master.m3u8"), record_type="transcoded", split_seconds=3600)
    recorder.put_desired(recording=True)
    waiting = recorder.wait_status(
        lambda s: s["state"] == "waiting" and s["sourceError"], 30, "the backstage gate to keep it waiting"
    )
    assert waiting["files"] == [] and waiting["recordings"] == []
    # Why it waits is in /status, for the operator to tell the user (the token never is).
    assert waiting["sourceError"].endswith("/hls/cmaf/master.m3u8: playlist answered HTTP 403"), waiting
    recorder.wait_log("playlist answered HTTP 403", 30)

    origin.set_phase("live")
    recorder.wait_status(lambda s: s["recording"], 40, "recording once the stream is public")
    recorder.wait_status(lambda s: s["durationSeconds"] >= 5, 40, "5 s recorded")
    recorder.put_desired(recording=False)
    idle = recorder.wait_status(lambda s: s["state"] == "idle", 30, "recording to stop")

    [name] = idle["files"]
    assert idle["sourceError"] is None
    # What was recorded stays in /status once the session is over: parts, sizes, durations.
    [recording] = idle["recordings"]
    assert recording["session"] + "_part0001.mp4" == name
    assert recording["endReason"] == "recording stopped" and not recording["recovered"]
    [part] = recording["parts"]
    assert part["file"] == name and part["bytes"] == (recorder.output_dir / name).stat().st_size
    assert part["durationSeconds"] >= 4 and recording["durationSeconds"] == part["durationSeconds"]
    info = ffprobe_json(str(recorder.output_dir / name))
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (640, 360), "the 360p rung, not 180p"
    assert any(s["codec_type"] == "audio" for s in info["streams"])
    assert float(info["format"]["duration"]) >= 4
    assert recorder.sidecars()[0]["recordType"] == "transcoded"


def test_with_the_read_token_a_transcoded_recording_starts_in_backstage(origins, transcoders, recorder_agent):
    # GetStream: "recording starts in backstage mode"; the origin still keeps viewers out.
    origin = origins.start()
    transcoders.start(origin)
    recorder = recorder_agent.start(
        origin.url("hls/cmaf/master.m3u8"), record_type="transcoded", read_token_file=origin.config.read_token_file
    )
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["durationSeconds"] >= 4, 60, "4 s recorded in backstage")
    assert origin.get("hls/cmaf/master.m3u8").status_code == 403, "anonymous backstage playback stays refused"
    recorder.put_desired(recording=False)
    [name] = recorder.wait_status(lambda s: s["state"] == "idle", 30, "recording to stop")["files"]

    info = ffprobe_json(str(recorder.output_dir / name))
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (640, 360)
    assert float(info["format"]["duration"]) >= 3
    log = recorder.log_text()
    assert "HTTP 403" not in log and origin.read_token not in log
    assert "Authorization: Bearer ***" in log, "the header reached ffmpeg, redacted in the log"
