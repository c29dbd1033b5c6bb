"""Main dies or freezes -> the warm backup goes on air inside the same encoder run; main comes
back -> it takes over again after its hysteresis. The status says so all along.

Main publishes red frames, the backup blue ones, so every segment tells which source it holds.
Sources are spliced into one encoder with continuous timestamps: the playlist shows no
discontinuity and keeps one init segment across switches (discontinuities with their own init
are for encoder restarts: see test_transcoder_restart).
"""
from __future__ import annotations

from pathlib import Path

import m3u8
import pytest

from tests.fixtures.media import first_frame_is_keyframe, wait_for
from tests.fixtures.rtmp_server import RtmpServer
from tests.fixtures.transcoder import dominant, frame_colors

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(240)]
RUNG = "180p"


def publish_color(publishers, url: str, color: str):
    """A small solid-colour source with a tone, 1 s GOP, paced in real time."""
    return publishers.custom([
        "-loglevel", "error", "-re", "-f", "lavfi", "-i", f"color=c={color}:size=320x180:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-g", "30", "-keyint_min", "30", "-c:a", "aac", "-b:a", "64k", "-f", "flv", url])


class Timeline:
    """The public CMAF playlist of the one rung, with the colour of every segment it listed."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "hls/cmaf" / RUNG
        self.colors: dict[str, list[str]] = {}  # segment uri -> colours of its frames
        self.order: list[str] = []

    def playlist(self) -> m3u8.M3U8:
        return m3u8.loads((self.dir / "index.m3u8").read_text())

    def refresh(self) -> m3u8.M3U8:
        playlist = self.playlist()
        for segment in playlist.segments:
            if segment.uri not in self.colors:
                init = self.dir / segment.init_section.uri
                self.colors[segment.uri] = [dominant(c) for c in frame_colors([init, self.dir / segment.uri])]
                self.order.append(segment.uri)
        return playlist

    def wait_color(self, color: str, timeout: float, after: int = 0) -> str:
        """The first segment listed after index ``after`` holding a ``color`` frame."""
        def found():
            self.refresh()
            return next((uri for uri in self.order[after:] if color in self.colors[uri]), None)
        return wait_for(found, timeout, interval=0.2, what=f"a {color} segment")


def start_pair(rtmp_server, publishers, transcoder_agent, **overrides):
    tx = transcoder_agent.start(main_url=rtmp_server.url("main"), backup_url=rtmp_server.url("backup"),
                                tracks=[RUNG], source_size=(320, 180), hls_mpegts=False, dash=False,
                                screenshot_interval_seconds=0, **overrides)
    main = publish_color(publishers, rtmp_server.url("main"), "red")
    backup = publish_color(publishers, rtmp_server.url("backup"), "blue")
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    timeline = Timeline(tx.out)
    tx.wait_file(f"hls/cmaf/{RUNG}/index.m3u8", 40)
    timeline.wait_color("red", 20)
    return tx, main, backup, timeline


def assert_one_seamless_run(timeline: Timeline) -> None:
    playlist = timeline.refresh()
    assert not playlist.is_endlist
    assert not any(s.discontinuity for s in playlist.segments), "a source switch needs no discontinuity"
    assert len({s.init_section.uri for s in playlist.segments}) == 1, "one run, one init segment"
    for segment in playlist.segments:
        joined = timeline.dir / f"check-{segment.uri}"
        joined.write_bytes((timeline.dir / segment.init_section.uri).read_bytes() + (timeline.dir / segment.uri).read_bytes())
        assert first_frame_is_keyframe(str(joined)), segment.uri
        joined.unlink()
    # Dates never go back nor overlap across the switch: one segment's date plus its duration is
    # the next one's, or later after a gap in the picture (never earlier, even when the backup's
    # cached frames were received before the timeline's date).
    for a, b in zip(playlist.segments, playlist.segments[1:]):
        assert (b.program_date_time - a.program_date_time).total_seconds() >= a.duration - 0.002, (a.uri, b.uri)


def test_main_killed_backup_takes_over_then_main_returns(rtmp_server, publishers, transcoder_agent):
    tx, main, backup, timeline = start_pair(rtmp_server, publishers, transcoder_agent)
    main.kill()
    tx.wait_status(lambda s: s.get("activeSource") == "backup", 10, "backup on air after main was killed")
    blue = timeline.wait_color("blue", 20)
    assert_one_seamless_run(timeline)

    after = timeline.order.index(blue)
    main = publish_color(publishers, rtmp_server.url("main"), "red")
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main back on air")
    timeline.wait_color("red", 20, after=after + 1)
    assert_one_seamless_run(timeline)
    assert "Non-monotonous DTS" not in tx.log_text()
    metrics = tx.metrics()
    assert 'onair_transcoder_source_switches_total{livestream="default/test",to="backup"} 1.0' in metrics
    assert 'onair_transcoder_source_switches_total{livestream="default/test",to="main"} 1.0' in metrics
    assert tx.status()["broadcasting"] is True
    assert tx.status()["sourceSwitches"] == {"backup": 1, "main": 1}


@pytest.fixture
def patient_rtmp_server(tmp_path: Path):
    """nginx-rtmp that keeps a frozen publisher for 30 s: the thaw must find it still there
    however long the wait for a backup segment took on a busy machine (the default fixture drops
    idle publishers after 3 s, which a slow freeze-to-blue-segment wait can outlast)."""
    server = RtmpServer(tmp_path / "nginx-rtmp-patient", drop_idle_seconds=30)
    yield server
    server.stop()


def test_main_frozen_backup_takes_over_then_thawed_main_returns(patient_rtmp_server, publishers, transcoder_agent):
    rtmp_server = patient_rtmp_server
    tx, main, backup, timeline = start_pair(rtmp_server, publishers, transcoder_agent)
    main.freeze()
    try:
        tx.wait_status(lambda s: s.get("activeSource") == "backup", 10, "backup on air while main is frozen")
        blue = timeline.wait_color("blue", 20)
    finally:
        main.thaw()  # within nginx's drop_idle_publisher: the same publisher carries on
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "thawed main back on air")
    timeline.wait_color("red", 20, after=timeline.order.index(blue) + 1)
    assert_one_seamless_run(timeline)

    # Nobody publishing: the status must say so rather than name a dead source.
    main.kill()
    backup.kill()
    tx.wait_status(lambda s: s.get("activeSource") is None, 10, "no source on air")
    assert tx.status()["broadcasting"] is True  # still broadcasting: it resumes when a source does


def test_backup_only_goes_on_air_and_main_takes_over_after_hysteresis(rtmp_server, publishers, transcoder_agent):
    tx = transcoder_agent.start(main_url=rtmp_server.url("main"), backup_url=rtmp_server.url("backup"),
                                tracks=[RUNG], source_size=(320, 180), hls_mpegts=False, dash=False,
                                screenshot_interval_seconds=0, return_seconds=4)
    publish_color(publishers, rtmp_server.url("backup"), "blue")
    tx.wait_status(lambda s: s.get("activeSource") == "backup", 30, "backup selected when main is absent")
    tx.put_desired(phase="live", broadcasting=True)
    timeline = Timeline(tx.out)
    tx.wait_file(f"hls/cmaf/{RUNG}/index.m3u8", 40)
    timeline.wait_color("blue", 20)
    publish_color(publishers, rtmp_server.url("main"), "red")
    tx.wait_status(lambda s: s.get("activeSource") == "main", 40, "main on air after its hysteresis")
    log = tx.log_text().splitlines()
    healthy = _log_time(next(line for line in log if "source main healthy" in line))
    switched = _log_time(next(line for line in log if "source switch: backup -> main" in line))
    assert switched - healthy >= 4 - 0.2, "main must stay healthy for return_seconds before taking over"
    timeline.wait_color("red", 20)
    assert_one_seamless_run(timeline)


def _log_time(line: str) -> float:
    from datetime import datetime

    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_backup_of_another_size_and_sample_rate_is_spliced_into_the_same_run(rtmp_server, publishers, transcoder_agent):
    tx = transcoder_agent.start(main_url=rtmp_server.url("main"), backup_url=rtmp_server.url("backup"),
                                tracks=[RUNG], source_size=(320, 180), hls_mpegts=False,
                                screenshot_interval_seconds=0)
    main = publish_color(publishers, rtmp_server.url("main"), "red")
    publishers.custom([
        "-loglevel", "error", "-re", "-f", "lavfi", "-i", "color=c=blue:size=640x360:rate=25",
        "-re", "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100", "-ac", "1",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-f", "flv", rtmp_server.url("backup")])
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    timeline = Timeline(tx.out)
    tx.wait_file(f"hls/cmaf/{RUNG}/index.m3u8", 40)
    timeline.wait_color("red", 20)
    main.kill()
    blue = timeline.wait_color("blue", 20)
    timeline.wait_color("blue", 20, after=timeline.order.index(blue) + 1)  # and it keeps going
    assert_one_seamless_run(timeline)
    assert 'onair_transcoder_encoder_restarts_total{livestream="default/test"} 0.0' in tx.metrics()
    assert "Non-monotonous DTS" not in tx.log_text(), "audio must stay on one timeline across the splice"


def test_a_backup_without_audio_gets_a_new_run_instead_of_a_stall(rtmp_server, publishers, transcoder_agent, tmp_path):
    from tests.fixtures.media import ffprobe_json

    tx = transcoder_agent.start(main_url=rtmp_server.url("main"), backup_url=rtmp_server.url("backup"),
                                tracks=[RUNG], source_size=(320, 180), hls_mpegts=False, dash=False,
                                screenshot_interval_seconds=0)
    main = publish_color(publishers, rtmp_server.url("main"), "red")
    publishers.custom(["-loglevel", "error", "-re", "-f", "lavfi", "-i", "color=c=blue:size=320x180:rate=30",
                       "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-f", "flv", rtmp_server.url("backup")])
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    timeline = Timeline(tx.out)
    tx.wait_file(f"hls/cmaf/{RUNG}/index.m3u8", 40)
    timeline.wait_color("red", 20)
    main.kill()
    blue = timeline.wait_color("blue", 20)
    playlist = timeline.refresh()
    segment = next(s for s in playlist.segments if s.uri == blue)
    assert segment.discontinuity, "the audio-less source starts a new run"
    joined = tmp_path / "joined.mp4"
    joined.write_bytes((timeline.dir / segment.init_section.uri).read_bytes() + (timeline.dir / blue).read_bytes())
    assert [s["codec_type"] for s in ffprobe_json(str(joined))["streams"]] == ["video"]
    assert not playlist.is_endlist


def test_a_backup_turned_on_live_is_read_and_used_without_a_new_run(rtmp_server, publishers, transcoder_agent):
    """``ingest.backup`` switched on a live stream reaches the running transcoder as Desired.backup:
    its warm reader starts, and a failover to it is a splice in the same run; switched off, the
    reader stops and the backup is not put on air again."""
    backup_url = rtmp_server.url("backup")
    tx = transcoder_agent.start(main_url=rtmp_server.url("main"), backup_url=backup_url, tracks=[RUNG],
                                source_size=(320, 180), hls_mpegts=False, dash=False, screenshot_interval_seconds=0)
    tx.put_desired(backup=False)
    main = publish_color(publishers, rtmp_server.url("main"), "red")
    publish_color(publishers, backup_url, "blue")
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    timeline = Timeline(tx.out)
    tx.wait_file(f"hls/cmaf/{RUNG}/index.m3u8", 40)
    red = timeline.wait_color("red", 20)
    run = tx.status()["runId"]
    assert tx.reader_pid(backup_url) is None, "no backup ingest: nothing reads it"

    tx.put_desired(backup=True)
    wait_for(lambda: tx.reader_pid(backup_url), 10, what="the backup's reader")
    wait_for(lambda: "source backup healthy" in tx.log_text(), 20, what="the backup warm")
    main.kill()
    tx.wait_status(lambda s: s.get("activeSource") == "backup", 10, "backup on air after main was killed")
    timeline.wait_color("blue", 20, after=timeline.order.index(red) + 1)
    assert_one_seamless_run(timeline)
    assert tx.status()["runId"] == run
    assert 'onair_transcoder_encoder_restarts_total{livestream="default/test"} 0.0' in tx.metrics()

    tx.put_desired(backup=False)  # the backup ingest is going away
    wait_for(lambda: tx.reader_pid(backup_url) is None, 10, what="the backup's reader stopped")
    tx.wait_status(lambda s: s.get("activeSource") is None and not s["broadcasting"], 20, "nothing on air")
    publish_color(publishers, rtmp_server.url("main"), "red")
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main back on air")
