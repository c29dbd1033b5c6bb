"""The encoder dies -> a new run: playlists go on with a discontinuity and the new run's own init
segment, never an ENDLIST, never a file overwritten, never a media sequence going back.

Every new encoder process starts in a working directory where the previous one left its
screenshot: all three ways a new process starts (a crash, a source with or without audio, the
broadcast stopped and started again) run with screenshots on and must produce the new run's
segments and a fresh screenshot."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from tests.fixtures.media import first_frame_is_keyframe, wait_for

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(180)]


class Watcher:
    """Reads a public media playlist repeatedly and remembers what must never happen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sequences: list[int] = []
        self.endlisted = False
        self.files: dict[str, bytes] = {}

    def read(self) -> m3u8.M3U8:
        playlist = m3u8.loads(self.path.read_text())
        self.sequences.append(playlist.media_sequence or 0)
        self.endlisted |= playlist.is_endlist
        for segment in playlist.segments:
            for uri in filter(None, (segment.uri, segment.init_section.uri if segment.init_section else None)):
                data = (self.path.parent / uri).read_bytes()
                assert self.files.setdefault(uri, data) == data, f"{uri} was overwritten"
        return playlist

    def wait_run(self, run_id: str, timeout: float) -> m3u8.M3U8:
        """The playlist once it lists a segment of ``run_id``."""
        return wait_for(
            lambda: (lambda p: p if any(run_id in s.uri for s in p.segments) else None)(self.read()),
            timeout,
            interval=0.2,
            what=f"a segment of run {run_id} in {self.path}",
        )


SCREENSHOT_EVERY = 1


def wait_screenshot_after(tx, previous_mtime_ns: int = 0, timeout: float = 30) -> int:
    """A published screenshot newer than ``previous_mtime_ns``; its mtime."""
    shot = tx.out / "screenshot.jpg"

    def fresh():
        try:
            mtime = shot.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        return mtime if mtime > previous_mtime_ns else None

    try:
        return wait_for(fresh, timeout, interval=0.2, what="a new screenshot")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; log tail:\n{tx.log_tail(3000)}") from None


def new_run(tx, previous: str, timeout: float = 40) -> str:
    return tx.wait_status(lambda s: s.get("runId") not in (None, previous), timeout, "a new run id")["runId"]


def test_encoder_crash_becomes_a_discontinuity_with_its_own_init(rtmp_server, publishers, transcoder_agent, tmp_path):
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        tracks=["180p"],
        source_size=(320, 180),
        screenshot_interval_seconds=SCREENSHOT_EVERY,
        playlist_segments=10,
    )
    publishers.rtmp(rtmp_server.url("main"), width=320, height=180)
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    cmaf = Watcher(tx.wait_file("hls/cmaf/180p/index.m3u8", 40))
    ts = Watcher(tx.wait_file("hls/ts/180p/index.m3u8", 20))
    wait_for(lambda: len(cmaf.read().segments) >= 2 and len(ts.read().segments) >= 2, 30, what="two segments")
    first_run = tx.status()["runId"]
    first_mpd = MPEGDASHParser.parse(tx.wait_file("dash/manifest.mpd").read_text())
    shot_before = wait_screenshot_after(tx)

    pid = tx.encoder_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    def restarted():
        cm, t = cmaf.read(), ts.read()
        return any(s.discontinuity for s in cm.segments) and any(s.discontinuity for s in t.segments) and cm

    playlist = wait_for(restarted, 40, interval=0.2, what="a discontinuity after the crash")
    status = tx.wait_status(lambda s: s.get("runId") not in (None, first_run), 10, "a new run id")
    second_run = status["runId"]

    index = next(i for i, s in enumerate(playlist.segments) if s.discontinuity)
    before, after = playlist.segments[index - 1], playlist.segments[index]
    assert before.init_section.uri != after.init_section.uri
    assert first_run in before.init_section.uri and second_run in after.init_section.uri
    assert first_run in before.uri and second_run in after.uri
    for segment in (before, after):
        joined = tmp_path / f"joined-{segment.uri}"
        joined.write_bytes(cmaf.files[segment.init_section.uri] + cmaf.files[segment.uri])
        assert first_frame_is_keyframe(str(joined)), segment.uri
    ts_playlist = ts.read()
    ts_after = next(s for s in ts_playlist.segments if s.discontinuity)
    assert first_frame_is_keyframe(str(tx.out / "hls/ts/180p" / ts_after.uri))

    assert not cmaf.endlisted and not ts.endlisted, "a crash must never end the playlist"
    assert cmaf.sequences == sorted(cmaf.sequences) and ts.sequences == sorted(ts.sequences)
    mpd = MPEGDASHParser.parse(tx.wait_file("dash/manifest.mpd").read_text())
    assert mpd.type == "dynamic" and first_mpd.type == "dynamic"
    template = mpd.periods[0].adaptation_sets[0].representations[0].segment_templates[0]
    assert second_run in template.media
    assert 'onair_transcoder_encoder_restarts_total{livestream="default/test"} 1.0' in tx.metrics()
    assert tx.status()["activeSource"] == "main"
    wait_screenshot_after(tx, shot_before)
    assert "already exists" not in tx.log_text()


def test_broadcast_stopped_and_started_again_publishes_a_new_run(rtmp_server, publishers, transcoder_agent):
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        tracks=["180p"],
        source_size=(320, 180),
        screenshot_interval_seconds=SCREENSHOT_EVERY,
        hls_mpegts=False,
        dash=False,
    )
    publishers.rtmp(rtmp_server.url("main"), width=320, height=180)
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    cmaf = Watcher(tx.wait_file("hls/cmaf/180p/index.m3u8", 40))
    first_run = tx.wait_status(lambda s: s.get("runId"), 10, "a run")["runId"]
    cmaf.wait_run(first_run, 30)
    shot = wait_screenshot_after(tx)

    tx.put_desired(broadcasting=False)
    wait_for(lambda: cmaf.read().is_endlist, 30, what="ENDLIST after the broadcast stopped")
    tx.wait_status(lambda s: not s["broadcasting"] and s.get("runId") is None, 10, "encoder stopped")

    tx.put_desired(broadcasting=True)
    second_run = new_run(tx, first_run)
    playlist = cmaf.wait_run(second_run, 40)
    resumed = next(s for s in playlist.segments if second_run in s.uri)
    assert resumed.discontinuity and not playlist.is_endlist
    wait_screenshot_after(tx, shot)
    tx.wait_status(lambda s: s["broadcasting"] and s.get("runId") == second_run, 10, "broadcasting again")
    assert 'onair_transcoder_encoder_restarts_total{livestream="default/test"} 0.0' in tx.metrics()
    assert "already exists" not in tx.log_text()


def test_sources_with_and_without_audio_each_get_a_run_that_publishes(rtmp_server, publishers, transcoder_agent):
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        backup_url=rtmp_server.url("backup"),
        tracks=["180p"],
        source_size=(320, 180),
        screenshot_interval_seconds=SCREENSHOT_EVERY,
        hls_mpegts=False,
        dash=False,
        return_seconds=2,
    )
    main = publishers.rtmp(rtmp_server.url("main"), width=320, height=180)
    publishers.rtmp(rtmp_server.url("backup"), width=320, height=180, audio=False)
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    cmaf = Watcher(tx.wait_file("hls/cmaf/180p/index.m3u8", 40))
    with_audio = tx.wait_status(lambda s: s.get("runId"), 10, "a run")["runId"]
    cmaf.wait_run(with_audio, 30)
    shot = wait_screenshot_after(tx)

    main.kill()  # the backup has no audio: a new run
    without_audio = new_run(tx, with_audio)
    cmaf.wait_run(without_audio, 40)
    shot = wait_screenshot_after(tx, shot)
    assert tx.status()["activeSource"] == "backup"

    publishers.rtmp(rtmp_server.url("main"), width=320, height=180)  # main is back, with audio: a new run
    with_audio_again = new_run(tx, without_audio)
    playlist = cmaf.wait_run(with_audio_again, 40)
    wait_screenshot_after(tx, shot)
    assert tx.status()["activeSource"] == "main"
    assert not playlist.is_endlist and not cmaf.endlisted
    assert "already exists" not in tx.log_text()


def test_an_encoder_that_keeps_failing_says_why_and_recovers_when_it_can(rtmp_server, publishers, transcoder_agent):
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        tracks=["180p"],
        source_size=(320, 180),
        screenshot_interval_seconds=SCREENSHOT_EVERY,
        hls_mpegts=False,
        dash=False,
    )
    publishers.rtmp(rtmp_server.url("main"), width=320, height=180)
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    # A real, lasting failure: ffmpeg cannot rename its screenshot onto a directory.
    blocker = Path(tx.config.work_dir) / "out" / "screenshot.jpg"
    blocker.mkdir(parents=True)
    tx.put_desired(phase="live", broadcasting=True)
    status = tx.wait_status(lambda s: s.get("error"), 40, "the encoder's failure in the status")
    assert status["broadcasting"] is False
    assert "exited with code" in status["error"] and "Is a directory" in status["error"], status["error"]
    assert " @ 0x" not in status["error"], "worded the same for every process"

    blocker.rmdir()
    tx.wait_status(lambda s: s["broadcasting"] and s.get("error") is None, 40, "broadcasting once the encoder can")
    tx.put_desired(broadcasting=False)
    tx.wait_status(lambda s: not s["broadcasting"] and s.get("error") is None, 20, "stopped on purpose: no error")
