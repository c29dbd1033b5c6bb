"""The origin's DVR index, driven by synthetic transcoder uploads (what ffmpeg's hls muxer PUTs)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import m3u8
import pytest

from onair.agent.origin import dvr as dvrmod
from onair.agent.origin.dvr import Dvr
from onair.agent.hls import parse_media_playlist

PLAYLIST = "hls/cmaf/360p/index.m3u8"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


class FakeTranscoder:
    """One ffmpeg run: uploads a segment, then its short live playlist, like hlsenc over HTTP."""

    def __init__(
        self,
        dvr: Dvr,
        run: str = "r1",
        init: str | None = "init_{run}.mp4",
        list_size: int = 4,
        duration: float = 1.0,
        start_sequence: int = 0,
        clock: list[float] | None = None,
        name: str = "seg_{run}_{n:05d}.m4s",
        playlist: str = PLAYLIST,
        init_bytes: bytes | None = None,
        uploads_when_done: bool = False,
    ) -> None:
        self.dvr = dvr
        # Like the real transcoder: a segment's bytes arrive once its last frame is encoded.
        self.uploads_when_done = uploads_when_done
        self.run = run
        self.init = init.format(run=run) if init else None
        self.list_size = list_size
        self.duration = duration
        self.sequence = start_sequence
        self.listed: list[tuple[int, str, datetime]] = []
        self.clock = clock if clock is not None else [0.0]
        self.name = name
        self.playlist = playlist
        self.dir = playlist.rsplit("/", 1)[0]
        self.init_bytes = init_bytes or f"init-{run}".encode()
        # what the origin holds on "disk", shared by every run writing to this DVR
        self.stored: dict[str, bytes] = dvr.__dict__.setdefault("_test_disk", {})
        if self.init:
            self.put(self.init, self.init_bytes)

    def put(self, name: str, data: bytes) -> str | None:
        path = f"{self.dir}/{name}"
        stored = self.dvr.placement(path, lambda p: self.stored.get(p) == data)
        if stored is not None:
            self.stored[stored] = data
            self.dvr.uploaded(path, stored, self.clock[0])
        return stored

    def text(self, endlist: bool = False) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{round(self.duration)}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.listed[0][0] if self.listed else self.sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        if self.init:
            lines.append(f'#EXT-X-MAP:URI="{self.init}"')
        for _, name, pdt in self.listed:
            # ffmpeg 5 writes PROGRAM-DATE-TIME after EXTINF
            lines += [
                f"#EXTINF:{self.duration:.6f},",
                f"#EXT-X-PROGRAM-DATE-TIME:{pdt.isoformat(timespec='milliseconds')}",
                name,
            ]
        if endlist:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def segment(self, upload: bool = True, publish: bool = True):
        name = self.name.format(run=self.run, n=self.sequence)
        pdt = T0 + timedelta(seconds=self.clock[0])
        data = f"{self.run}-{self.sequence}".encode()
        if upload and not self.uploads_when_done:
            self.put(name, data)
        self.listed.append((self.sequence, name, pdt))
        self.listed = self.listed[-self.list_size :]
        self.sequence += 1
        self.clock[0] += self.duration
        if upload and self.uploads_when_done:
            self.put(name, data)
        return self.publish() if publish else None

    def publish(self, endlist: bool = False):
        return self.dvr.ingest(self.playlist, parse_media_playlist(self.text(endlist)), self.clock[0])

    def run_for(self, n: int):
        return [self.segment() for _ in range(n)]


def served(dvr: Dvr, ended: bool = False, query: str = "", path: str = PLAYLIST) -> m3u8.M3U8:
    text = dvr.render(path, ended=ended, query=query)
    assert text is not None
    return m3u8.loads(text)


def test_window_slides_by_duration():
    dvr = Dvr(window_seconds=30)
    tx = FakeTranscoder(dvr)
    results = tx.run_for(40)
    pl = served(dvr)
    assert len(pl.segments) == 30
    assert sum(s.duration for s in pl.segments) == pytest.approx(30)
    assert pl.media_sequence == 10
    assert pl.segments[0].uri == "seg_r1_00010.m4s" and pl.segments[-1].uri == "seg_r1_00039.m4s"
    removed = [s.path for r in results for s in r.removed]
    assert removed == [f"hls/cmaf/360p/seg_r1_{n:05d}.m4s" for n in range(10)]


def test_window_holds_longer_than_the_transcoders_list_and_ignores_its_deletes():
    dvr = Dvr(window_seconds=60)
    tx = FakeTranscoder(dvr, list_size=4)
    tx.run_for(20)
    assert len(served(dvr).segments) == 20
    # The transcoder deletes what left its own 4-segment list; the DVR still serves it.
    assert dvr.keeps("hls/cmaf/360p/seg_r1_00000.m4s")
    assert dvr.keeps("hls/cmaf/360p/init_r1.mp4")
    assert not dvr.keeps("hls/cmaf/360p/unknown.m4s")


def test_slid_out_files_are_deleted_after_a_grace_period_not_before():
    dvr = Dvr(window_seconds=30)
    tx = FakeTranscoder(dvr)
    tx.run_for(35)
    now = tx.clock[0]
    assert dvr.due(now) == []
    grace = max(dvrmod.GRACE_MIN_SECONDS, dvrmod.GRACE_TARGET_DURATIONS * 1)
    doomed = dvr.due(now + grace)
    assert sorted(doomed) == [f"hls/cmaf/360p/seg_r1_{n:05d}.m4s" for n in range(5)]
    # the init is still in use by the window
    assert "hls/cmaf/360p/init_r1.mp4" not in doomed
    assert dvr.due(now + grace + 100) == []


def test_program_date_time_and_durations_are_kept():
    dvr = Dvr(window_seconds=30)
    tx = FakeTranscoder(dvr, duration=2.0)
    tx.run_for(3)
    pl = served(dvr)
    assert [s.program_date_time for s in pl.segments] == [T0, T0 + timedelta(seconds=2), T0 + timedelta(seconds=4)]
    assert [s.duration for s in pl.segments] == [2.0, 2.0, 2.0]
    assert pl.target_duration == 2
    assert pl.is_independent_segments


def test_no_endlist_while_live_even_when_the_upload_has_one():
    dvr = Dvr(window_seconds=30)
    tx = FakeTranscoder(dvr)
    tx.run_for(5)
    tx.publish(endlist=True)  # ffmpeg stopped with SIGINT
    assert not served(dvr).is_endlist
    rendition = dvr.renditions[PLAYLIST]
    assert not rendition.upstream_ended(tx.clock[0] + dvrmod.UPSTREAM_END_GRACE_SECONDS - 1)
    assert rendition.upstream_ended(tx.clock[0] + dvrmod.UPSTREAM_END_GRACE_SECONDS)
    # the caller decides; ended=True is the stream's end (phase ended or upstream end confirmed)
    assert served(dvr, ended=True).is_endlist


def test_a_new_run_withdraws_the_upstream_endlist():
    dvr = Dvr(window_seconds=30)
    clock = [0.0]
    FakeTranscoder(dvr, clock=clock).run_for(3)
    FakeTranscoder(dvr, clock=clock).publish(endlist=True)
    FakeTranscoder(dvr, run="r2", clock=clock).run_for(1)
    assert dvr.renditions[PLAYLIST].upstream_ended_at is None


def test_restart_with_new_init_is_a_discontinuity_with_its_own_map():
    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    FakeTranscoder(dvr, run="r1", clock=clock).run_for(5)
    FakeTranscoder(dvr, run="r2", clock=clock).run_for(3)
    text = dvr.render(PLAYLIST, ended=False)
    pl = m3u8.loads(text)
    assert [s.uri for s in pl.segments][4:6] == ["seg_r1_00004.m4s", "seg_r2_00000.m4s"]
    assert [s.discontinuity for s in pl.segments] == [False] * 5 + [True, False, False]
    assert pl.segments[0].init_section.uri == "init_r1.mp4"
    assert pl.segments[5].init_section.uri == "init_r2.mp4"
    assert text.count("#EXT-X-MAP") == 2
    # the origin's sequence keeps counting through the restart
    assert pl.media_sequence == 0 and len(pl.segments) == 8


def test_sequence_reset_with_identical_init_bytes_repeats_the_map():
    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    FakeTranscoder(dvr, run="r1", init="init.mp4", name="seg_{run}_{n:05d}.m4s", clock=clock).run_for(3)
    # same init name, same bytes (same encoder settings), sequence back to 0
    second = FakeTranscoder(dvr, run="r2", init="init.mp4", clock=clock, init_bytes=b"init-r1")
    second.run_for(2)
    text = dvr.render(PLAYLIST, ended=False)
    pl = m3u8.loads(text)
    assert [s.discontinuity for s in pl.segments] == [False, False, False, True, False]
    assert text.count('#EXT-X-MAP:URI="init.mp4"') == 2


def test_sequence_jump_forward_is_a_discontinuity():
    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    FakeTranscoder(dvr, run="r1", init=None, name="seg_{run}_{n}.ts", clock=clock).run_for(3)
    # MPEG-TS run restarted with -hls_start_number_source epoch
    FakeTranscoder(
        dvr, run="r2", init=None, name="seg_{run}_{n}.ts", start_sequence=1_700_000_000, clock=clock
    ).run_for(2)
    pl = served(dvr)
    assert [s.discontinuity for s in pl.segments] == [False, False, False, True, False]
    assert "#EXT-X-MAP" not in dvr.render(PLAYLIST, ended=False)
    assert pl.version == 7  # the upstream version is kept


def test_init_overwritten_in_place_is_versioned_so_old_segments_keep_theirs():
    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    first = FakeTranscoder(dvr, run="r1", init="init.mp4", clock=clock)
    first.run_for(3)
    # A restarted ffmpeg rewrites init.mp4 with different bytes under the same name.
    second = FakeTranscoder(dvr, run="r2", init="init.mp4", clock=clock)
    assert dvr.latest["hls/cmaf/360p/init.mp4"] == "hls/cmaf/360p/init~2.mp4"
    assert first.stored["hls/cmaf/360p/init.mp4"] == b"init-r1"  # never overwritten
    assert second.stored["hls/cmaf/360p/init~2.mp4"] == b"init-r2"
    second.run_for(2)
    pl = served(dvr)
    assert [s.init_section.uri for s in pl.segments] == ["init.mp4"] * 3 + ["init~2.mp4"] * 2
    assert pl.segments[3].discontinuity


def test_retried_upload_of_identical_bytes_is_not_indexed_twice():
    dvr = Dvr(window_seconds=60)
    tx = FakeTranscoder(dvr)
    tx.run_for(3)
    assert tx.put("seg_r1_00002.m4s", b"r1-2") is None
    tx.publish()
    assert len(served(dvr).segments) == 3


def test_segment_listed_before_its_bytes_arrive_is_indexed_when_they_do():
    dvr = Dvr(window_seconds=60)
    tx = FakeTranscoder(dvr)
    tx.run_for(2)
    r = tx.segment(upload=False)
    assert r.appended == ()
    tx.put("seg_r1_00002.m4s", b"r1-2")
    tx.segment()
    assert [s.uri for s in served(dvr).segments] == [f"seg_r1_{n:05d}.m4s" for n in range(4)]
    assert not any(s.discontinuity for s in served(dvr).segments)


def test_clear_empties_the_window_deletes_files_and_new_segments_keep_coming():
    dvr = Dvr(window_seconds=60)
    tx = FakeTranscoder(dvr)
    tx.run_for(10)
    doomed = dvr.clear()
    assert sorted(doomed) == [f"hls/cmaf/360p/seg_r1_{n:05d}.m4s" for n in range(10)]
    assert "hls/cmaf/360p/init_r1.mp4" not in doomed  # still the current init
    assert dvr.render(PLAYLIST, ended=False) is None
    assert dvr.playlists() == []
    tx.segment()  # the transcoder's playlist still lists 3 cleared segments: they stay out
    pl = served(dvr)
    assert [s.uri for s in pl.segments] == ["seg_r1_00010.m4s"]
    assert pl.media_sequence == 10
    assert pl.segments[0].init_section.uri == "init_r1.mp4"
    assert not pl.segments[0].discontinuity


def test_discontinuity_sequence_advances_when_a_discontinuity_slides_out():
    dvr = Dvr(window_seconds=30)
    clock = [0.0]
    FakeTranscoder(dvr, run="r1", clock=clock).run_for(5)
    FakeTranscoder(dvr, run="r2", clock=clock).run_for(40)
    pl = served(dvr)
    assert pl.discontinuity_sequence == 1
    assert not any(s.discontinuity for s in pl.segments)
    # the first period's init is no longer referenced: it goes once its grace passes
    assert "hls/cmaf/360p/init_r1.mp4" in dvr.due(clock[0] + 100)


def test_without_dvr_a_short_live_window_is_served():
    dvr = Dvr(window_seconds=3600, enabled=False)
    tx = FakeTranscoder(dvr, duration=2.0)
    tx.run_for(30)
    pl = served(dvr)
    assert sum(s.duration for s in pl.segments) == pytest.approx(max(dvrmod.LIVE_WINDOW_MIN_SECONDS, 6 * 2.0))


def test_token_query_is_carried_by_every_uri():
    dvr = Dvr(window_seconds=30)
    FakeTranscoder(dvr).run_for(2)
    text = dvr.render(PLAYLIST, ended=False, query="token=abc.def")
    assert '#EXT-X-MAP:URI="init_r1.mp4?token=abc.def"' in text
    assert [s.uri for s in m3u8.loads(text).segments] == [
        "seg_r1_00000.m4s?token=abc.def",
        "seg_r1_00001.m4s?token=abc.def",
    ]


def test_target_duration_never_shrinks():
    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    FakeTranscoder(dvr, run="r1", duration=4.0, clock=clock).run_for(2)
    FakeTranscoder(dvr, run="r2", duration=1.0, clock=clock).run_for(2)
    assert served(dvr).target_duration == 4


def test_target_duration_bounds_durations_rounded_to_the_nearest_second():
    # 29.97 fps: 2 s segments of 60 frames last 2.002 s, and RFC 8216 rounds EXTINF to the nearest integer.
    dvr = Dvr(window_seconds=60)
    FakeTranscoder(dvr, duration=2.002).run_for(3)
    assert served(dvr).target_duration == 2


def test_uris_leaving_the_tree_are_skipped():
    dvr = Dvr(window_seconds=60)
    text = "\n".join(
        [
            "#EXTM3U",
            "#EXT-X-TARGETDURATION:1",
            "#EXTINF:1.0,",
            "../../../../etc/passwd",
            "#EXTINF:1.0,",
            "http://evil.example/x.ts",
            "#EXTINF:1.0,",
            "ok.ts",
            "",
        ]
    )
    dvr.uploaded("hls/ts/360p/ok.ts", "hls/ts/360p/ok.ts", 0.0)
    result = dvr.ingest("hls/ts/360p/index.m3u8", parse_media_playlist(text), 0.0)
    assert result.skipped == ("../../../../etc/passwd", "http://evil.example/x.ts")
    assert [s.path for s in result.appended] == ["hls/ts/360p/ok.ts"]


def test_uploads_never_listed_are_deleted_after_a_while():
    dvr = Dvr(window_seconds=60)
    tx = FakeTranscoder(dvr)
    tx.segment(publish=False)  # crashed before writing the playlist
    assert dvr.due(1.0) == []
    doomed = dvr.due(dvrmod.FRESH_TTL_SECONDS + 2)
    assert "hls/cmaf/360p/seg_r1_00000.m4s" in doomed


def test_two_renditions_are_independent():
    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    FakeTranscoder(dvr, run="r1", clock=clock).run_for(3)
    FakeTranscoder(dvr, run="r1", clock=[0.0], playlist="hls/cmaf/720p/index.m3u8").run_for(5)
    assert dvr.playlists() == ["hls/cmaf/360p/index.m3u8", "hls/cmaf/720p/index.m3u8"]
    assert dvr.segment_count("hls/cmaf/720p/index.m3u8") == 5
    assert dvr.available_seconds() == pytest.approx(3.0)


def test_rendered_playlist_follows_every_change():
    dvr = Dvr(window_seconds=30)
    tx = FakeTranscoder(dvr)
    tx.run_for(2)
    first = dvr.render(PLAYLIST, ended=False)
    assert dvr.render(PLAYLIST, ended=False) is first  # served from cache while nothing changed
    tx.segment()
    assert len(served(dvr).segments) == 3
    assert served(dvr, ended=True).is_endlist and not served(dvr).is_endlist
    dvr.clear()
    assert dvr.render(PLAYLIST, ended=False) is None


def _restarted(records: list[dict], window: float = 60, now: float = 0.0) -> Dvr:
    fresh = Dvr(window_seconds=window)
    assert fresh.replay(records, now) == 0
    return fresh


def test_journal_replay_rebuilds_the_same_playlists():
    dvr = Dvr(window_seconds=30)
    clock = [0.0]
    FakeTranscoder(dvr, run="r1", clock=clock).run_for(20)
    FakeTranscoder(dvr, run="r2", clock=clock).run_for(15)  # slides, discontinuity, trims
    journal = dvr.drain_journal()
    assert dvr.journal == []
    again = _restarted(journal, window=30)
    assert again.render(PLAYLIST, ended=False) == dvr.render(PLAYLIST, ended=False)
    assert again.refs == dvr.refs
    # and it goes on where the previous process stopped: sequence and periods continue
    FakeTranscoder(again, run="r3", clock=clock).run_for(1)
    pl = served(again)
    assert pl.segments[-1].uri == "seg_r3_00000.m4s" and pl.segments[-1].discontinuity
    assert pl.media_sequence + len(pl.segments) - 1 == 35


def test_snapshot_compacts_the_journal_without_losing_anything():
    dvr = Dvr(window_seconds=30)
    FakeTranscoder(dvr).run_for(50)
    full = dvr.drain_journal()
    snapshot = dvr.snapshot()
    assert len(snapshot) < len(full)
    assert _restarted(snapshot, window=30).render(PLAYLIST, ended=False) == dvr.render(PLAYLIST, ended=False)


def test_replay_after_a_clear_keeps_continuity():
    dvr = Dvr(window_seconds=30)
    tx = FakeTranscoder(dvr)
    tx.run_for(5)
    dvr.clear()
    again = _restarted(dvr.snapshot())
    assert again.render(PLAYLIST, ended=False) is None
    assert again.keeps("hls/cmaf/360p/init_r1.mp4")  # the current init survives the restart
    tx.dvr = again
    tx.segment()
    pl = served(again)
    assert pl.media_sequence == 5 and not pl.segments[0].discontinuity


def test_replay_applies_a_window_that_shrank_meanwhile():
    dvr = Dvr(window_seconds=60)
    FakeTranscoder(dvr).run_for(60)
    again = _restarted(dvr.drain_journal(), window=30, now=100.0)
    assert sum(s.duration for s in served(again).segments) == pytest.approx(30)
    assert "hls/cmaf/360p/seg_r1_00000.m4s" in again.due(1000.0)


def test_corrupt_journal_records_are_skipped():
    dvr = Dvr(window_seconds=30)
    FakeTranscoder(dvr).run_for(3)
    records = dvr.drain_journal() + [{"op": "add", "p": PLAYLIST, "s": ["x"]}, {"nope": 1}, {"op": "what", "p": "x"}]
    again = Dvr(window_seconds=30)
    assert again.replay(records, 0.0) == 3
    assert len(served(again).segments) == 3


# ----------------------------------------------------------------------------- public and private segments
def viewers(dvr: Dvr, ended: bool = False, path: str = PLAYLIST) -> m3u8.M3U8 | None:
    text = dvr.render(path, ended=ended, public=True)
    return m3u8.loads(text) if text is not None else None


def make_public(dvr: Dvr, clock: list[float], public: bool = True) -> None:
    dvr.set_public(public, clock[0], T0 + timedelta(seconds=clock[0]))


def test_the_backstage_preview_never_becomes_public_and_viewers_start_at_going_live():
    dvr = Dvr(window_seconds=600)
    dvr.set_public(False, 0.0, T0)  # backstage: the origin makes nothing public
    clock = [0.0]
    tx = FakeTranscoder(dvr, clock=clock, duration=2.0, uploads_when_done=True)
    tx.run_for(5)  # the preview: seg 0..4
    assert viewers(dvr) is None, "nothing was broadcast to viewers yet"
    assert len(served(dvr).segments) == 5  # token holders and the recorder get the preview
    make_public(dvr, clock)  # go live at t=10, while seg 5 (10..12) is being encoded
    tx.run_for(4)
    pl = viewers(dvr)
    # seg 5 started at the switch and its upload proves nothing about what it holds: private too.
    assert [s.uri for s in pl.segments] == ["seg_r1_00006.m4s", "seg_r1_00007.m4s", "seg_r1_00008.m4s"]
    # Numbered as for members (seg 6 is #6): a replica made public a moment later numbers alike.
    assert pl.media_sequence == 6 and pl.discontinuity_sequence == 0
    assert not any(s.discontinuity for s in pl.segments)
    assert pl.segments[0].init_section.uri == "init_r1.mp4"
    # Files follow the playlists: viewers get the public segments and the init, never the preview.
    assert dvr.public_file("hls/cmaf/360p/seg_r1_00006.m4s") and dvr.public_file("hls/cmaf/360p/init_r1.mp4")
    assert not dvr.public_file("hls/cmaf/360p/seg_r1_00000.m4s")
    assert not dvr.public_file("hls/cmaf/360p/seg_r1_00005.m4s")
    assert not dvr.public_file("hls/cmaf/360p/unknown.m4s")
    # The full view is unchanged: same numbers as before going live.
    full = served(dvr)
    assert len(full.segments) == 9 and full.media_sequence == 0
    # Ended: the viewers' DVR is what was broadcast to them, as VOD.
    ended = viewers(dvr, ended=True)
    assert ended.is_endlist and [s.uri for s in ended.segments] == [s.uri for s in pl.segments]


def test_private_stretches_leave_a_consistent_viewers_playlist():
    """live -> backstage (preview) -> live: viewers see both live stretches, numbered on their own
    with a discontinuity between them, and each reload agrees with the previous one."""
    dvr = Dvr(window_seconds=16)
    clock = [0.0]
    tx = FakeTranscoder(dvr, clock=clock, duration=2.0, uploads_when_done=True)
    tx.run_for(3)  # public from the start (a bare Dvr): seg 0..2
    make_public(dvr, clock, False)
    tx.run_for(2)  # backstage preview: seg 3, 4
    make_public(dvr, clock)
    tx.run_for(3)  # seg 5 overlaps the switch: private; seg 6, 7 public
    first = viewers(dvr)
    assert [s.uri for s in first.segments] == [
        "seg_r1_00000.m4s",
        "seg_r1_00001.m4s",
        "seg_r1_00002.m4s",
        "seg_r1_00006.m4s",
        "seg_r1_00007.m4s",
    ]
    assert first.media_sequence == 0
    assert [bool(s.discontinuity) for s in first.segments] == [False, False, False, True, False]
    tx.run_for(3)  # the window slides past the first live stretch
    later = viewers(dvr)
    assert later.segments[0].uri == "seg_r1_00006.m4s"
    # seg 6 was number 3 in the first reload and still is; its period is still number 1.
    assert later.media_sequence == 3 and later.discontinuity_sequence == 1
    assert not later.segments[0].discontinuity


def test_public_flags_and_numbering_survive_a_restart():
    dvr = Dvr(window_seconds=8)
    clock = [0.0]
    tx = FakeTranscoder(dvr, clock=clock, duration=2.0, uploads_when_done=True)
    tx.run_for(2)
    make_public(dvr, clock, False)
    tx.run_for(6)  # the public segments slide out of the window: only private ones are left
    assert viewers(dvr) is None
    for records in (dvr.snapshot(), dvr.drain_journal()):
        again = _restarted(records, window=8, now=clock[0])
        assert again.render(PLAYLIST, ended=False) == dvr.render(PLAYLIST, ended=False)
        assert viewers(again) is None
        assert not again.public_file("hls/cmaf/360p/seg_r1_00007.m4s")
        # Public again after the restart: the viewers' numbering goes on after their last segment.
        clock2 = list(clock)
        tx2 = FakeTranscoder(again, clock=clock2, duration=2.0, start_sequence=8, uploads_when_done=True)
        tx2.dvr = again
        tx2.run_for(3)
        pl = viewers(again)
        assert pl.media_sequence == 2 and pl.discontinuity_sequence == 1


def test_segments_journaled_before_private_segments_existed_are_public():
    dvr = Dvr(window_seconds=30)
    FakeTranscoder(dvr).run_for(3)
    old_format = [dict(r, s=r["s"][:7]) if r["op"] == "add" else r for r in dvr.drain_journal()]
    again = _restarted(old_format)
    assert again.render(PLAYLIST, ended=False, public=True) == dvr.render(PLAYLIST, ended=False, public=True)


def test_without_a_private_stretch_the_first_segment_is_public():
    dvr = Dvr(window_seconds=60)
    dvr.set_public(False, 0.0, T0)  # how an origin starts, until the control plane says more
    clock = [0.0]
    make_public(dvr, clock)
    tx = FakeTranscoder(dvr, clock=clock, duration=2.0, uploads_when_done=True)
    tx.run_for(2)
    assert [s.uri for s in viewers(dvr).segments] == ["seg_r1_00000.m4s", "seg_r1_00001.m4s"]


def test_a_late_upload_of_the_segment_in_flight_at_the_switch_stays_private():
    """Its PROGRAM-DATE-TIME says it began before viewers were let in, however late it arrives."""
    dvr = Dvr(window_seconds=60)
    dvr.set_public(False, 0.0, T0)
    clock = [0.0]
    tx = FakeTranscoder(dvr, clock=clock, duration=2.0, uploads_when_done=True)
    tx.run_for(3)  # 0..6, last private upload at 6
    tx.segment(upload=False, publish=False)  # seg 3 (6..8) is encoded...
    dvr.set_public(True, 6.5, T0 + timedelta(seconds=6.5))  # ...viewers are let in while it is...
    clock[0] += 1.0  # ...and its upload is held up
    tx.put("seg_r1_00003.m4s", b"r1-3")  # ...arriving at 9: the upload time alone would call it public
    tx.publish()
    assert viewers(dvr) is None
    assert not dvr.public_file("hls/cmaf/360p/seg_r1_00003.m4s")


def test_replicas_made_public_a_moment_apart_number_every_segment_they_both_show_alike():
    """Two origin replicas indexing the same uploads; go-live reaches one 3 s after the other, so
    the later one's first public segment is a later one. At every upload the segments both show
    to viewers carry the same media sequence and discontinuity numbers."""
    replicas = [Dvr(window_seconds=600), Dvr(window_seconds=600)]
    clocks = [[0.0], [0.0]]
    txs = [FakeTranscoder(d, clock=c, duration=2.0, uploads_when_done=True) for d, c in zip(replicas, clocks)]
    for dvr in replicas:
        dvr.set_public(False, 0.0, T0)  # backstage
    for tx in txs:
        tx.run_for(3)
        # The transcoder restarted during the preview: the viewers' periods are numbered too.
        tx.sequence = 40
    for tx in txs:
        tx.run_for(2)
    make_public(replicas[0], clocks[0])  # go-live reaches the first replica at t=10...

    def numbered(dvr: Dvr) -> dict[int, tuple[int, str]]:
        pl = viewers(dvr)
        if pl is None:
            return {}
        out, disc = {}, pl.discontinuity_sequence or 0
        for i, seg in enumerate(pl.segments):
            disc += 1 if seg.discontinuity else 0
            out[pl.media_sequence + i] = (disc, seg.uri)
        return out

    both = 0
    for step in range(8):
        if step == 2:
            make_public(replicas[1], clocks[1])  # ...and the second at t=14
        for tx in txs:
            tx.segment()
        first, second = numbered(replicas[0]), numbered(replicas[1])
        assert all(first[msn] == second[msn] for msn in set(first) & set(second)), (step, first, second)
        both += bool(set(first) & set(second))
    assert both >= 4 and len(numbered(replicas[0])) > len(numbered(replicas[1]))
    # The members' numbering is the viewers': the first public segment keeps its number.
    assert viewers(replicas[0]).media_sequence == served(replicas[0]).media_sequence + 6


MASTER = "hls/cmaf/master.m3u8"
HIGH = "hls/cmaf/720p/index.m3u8"


def two_renditions(dvr: Dvr, clock: list[float], segments: int = 3) -> tuple[FakeTranscoder, FakeTranscoder]:
    low = FakeTranscoder(dvr, clock=clock)
    high = FakeTranscoder(dvr, clock=[clock[0]], playlist=HIGH)
    for _ in range(segments):
        low.segment()
        high.segment()
    return low, high


def test_a_joining_viewer_waits_for_the_next_segment_of_every_rendition_of_its_master():
    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    low, high = two_renditions(dvr, clock)  # segments 0..2, the last one listed at t=3
    assert dvr.join_targets(MASTER, public=False, now=3.5) == {PLAYLIST: 2, HIGH: 2}
    assert dvr.join_targets(MASTER, public=True, now=3.5) == {PLAYLIST: 2, HIGH: 2}
    # What the server then waits for: segment 3 listed in each.
    assert dvr.wait_state(PLAYLIST, False, 3, None, ended=False) == "wait"
    low.segment()
    assert dvr.wait_state(PLAYLIST, False, 3, None, ended=False) == "ready"
    assert dvr.wait_state(HIGH, False, 3, None, ended=False) == "wait"
    high.segment()
    assert dvr.wait_state(HIGH, False, 3, None, ended=False) == "ready"
    # Another packaging of the stream has its own master.
    assert dvr.join_targets("hls/ts/master.m3u8", public=False, now=4.5) == {}


def test_no_wait_when_a_segment_was_just_listed_or_the_stream_is_not_flowing():
    dvr = Dvr(window_seconds=60)
    two_renditions(dvr, [0.0])  # the last segment listed at t=3, one a second
    assert dvr.join_targets(MASTER, public=False, now=3.05) == {}, "a fresh edge already"
    assert dvr.join_targets(MASTER, public=False, now=3.1) != {}
    assert dvr.join_targets(MASTER, public=False, now=4.5) != {}
    assert dvr.join_targets(MASTER, public=False, now=4.6) == {}, "nothing listed for 1.6 segments"


def test_no_wait_for_low_latency_renditions_or_a_newest_segment_viewers_do_not_get():
    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    low, high = two_renditions(dvr, clock)
    dvr.renditions[HIGH].part_target = 0.2  # LL-HLS: clients follow the parts, not the segments
    assert dvr.join_targets(MASTER, public=False, now=3.5) == {}

    dvr = Dvr(window_seconds=60)
    clock = [0.0]
    low, high = two_renditions(dvr, clock)
    make_public(dvr, clock, public=False)  # back to backstage: what comes now is for members
    low.segment()
    high.segment()
    assert dvr.join_targets(MASTER, public=True, now=4.5) == {}
    assert dvr.join_targets(MASTER, public=False, now=4.5) == {PLAYLIST: 3, HIGH: 3}
