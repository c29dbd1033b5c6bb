"""The encoder dies -> a new run: playlists go on with a discontinuity and the new run's own init
segment, never an ENDLIST, never a file overwritten, never a media sequence going back."""
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


def test_encoder_crash_becomes_a_discontinuity_with_its_own_init(rtmp_server, publishers, transcoder_agent, tmp_path):
    tx = transcoder_agent.start(main_url=rtmp_server.url("main"), tracks=["180p"], source_size=(320, 180),
                                screenshot_interval_seconds=0, playlist_segments=10)
    publishers.rtmp(rtmp_server.url("main"), width=320, height=180)
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    cmaf = Watcher(tx.wait_file("hls/cmaf/180p/index.m3u8", 40))
    ts = Watcher(tx.wait_file("hls/ts/180p/index.m3u8", 20))
    wait_for(lambda: len(cmaf.read().segments) >= 2 and len(ts.read().segments) >= 2, 30, what="two segments")
    first_run = tx.status()["runId"]
    first_mpd = MPEGDASHParser.parse(tx.wait_file("dash/manifest.mpd").read_text())

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
