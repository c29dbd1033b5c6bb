"""Low-latency HLS at the origin (RFC 8216bis): the index of partial segments and the playlists made
from it, driven by synthetic transcoder uploads shaped like the packager's (parts PUT as they are
cut, then the playlist listing them). Every rule is read back with an independent parser (m3u8)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import m3u8
import pytest

from onair.agent.origin.dvr import PART_HOLD_BACK_PART_TARGETS, SKIP_TARGET_DURATIONS, Dvr, live_edge
from onair.agent.hls import PlaylistError, parse_media_playlist

CMAF = "hls/cmaf/{rung}/index.m3u8"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
PART = 0.25
PARTS_PER_SEGMENT = 4


class LLTranscoder:
    """One rendition of one run: cuts 0.25 s parts, closes a 1 s segment every fourth part."""

    def __init__(
        self, dvr: Dvr, rung: str = "360p", run: str = "r1", clock: list[float] | None = None, list_size: int = 6
    ) -> None:
        self.dvr = dvr
        self.rung = rung
        self.run = run
        self.playlist = CMAF.format(rung=rung)
        self.dir = self.playlist.rsplit("/", 1)[0]
        self.clock = clock if clock is not None else [0.0]
        self.list_size = list_size
        self.part_number = 0
        self.media_sequence = 0
        self.segments: list[tuple[str, list[tuple[str, bool]], datetime]] = []  # closed
        self.open: list[tuple[str, bool]] = []
        self.open_since = T0
        self.init = f"init_{run}.mp4"
        self.put(self.init)

    def put(self, name: str) -> None:
        path = f"{self.dir}/{name}"
        stored = self.dvr.placement(path, lambda p: False)
        assert stored is not None
        self.dvr.uploaded(path, stored, self.clock[0])

    def part_name(self, n: int) -> str:
        return f"{self.run}_{n:06d}.m4s"

    def part(self, publish: bool = True, upload: bool = True):
        """The next part is cut (and uploaded); a segment closes when an independent one starts."""
        independent = self.part_number % PARTS_PER_SEGMENT == 0
        if independent and self.open:
            first = self.open[0][0]
            seg = f"{self.run}_seg{first}"
            self.put(seg)
            self.segments.append((seg, self.open, self.open_since))
            while len(self.segments) > self.list_size:
                self.segments.pop(0)
                self.media_sequence += 1
            self.open = []
        if not self.open:
            self.open_since = T0 + timedelta(seconds=self.clock[0])
        name = self.part_name(self.part_number)
        if upload:
            self.put(name)
        self.open.append((name, independent))
        self.part_number += 1
        self.clock[0] += PART
        return self.publish() if publish else None

    def text(self, endlist: bool = False) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            "#EXT-X-TARGETDURATION:1",
            f"#EXT-X-PART-INF:PART-TARGET={PART}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            f'#EXT-X-MAP:URI="{self.init}"',
        ]
        for seg, parts, pdt in self.segments:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{pdt.isoformat(timespec='milliseconds')}")
            lines += [self._part_line(p) for p in parts]
            lines += [f"#EXTINF:{PART * len(parts):.6f},", seg]
        lines += [self._part_line(p) for p in self.open]
        if endlist:
            lines.append("#EXT-X-ENDLIST")
        else:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.part_name(self.part_number)}"')
        return "\n".join(lines) + "\n"

    @staticmethod
    def _part_line(part: tuple[str, bool]) -> str:
        return f'#EXT-X-PART:DURATION={PART:.6f},URI="{part[0]}"' + (",INDEPENDENT=YES" if part[1] else "")

    def publish(self, endlist: bool = False):
        return self.dvr.ingest(self.playlist, parse_media_playlist(self.text(endlist)), self.clock[0])

    def run_for(self, parts: int) -> None:
        for _ in range(parts):
            self.part()


def served(dvr: Dvr, path: str = CMAF.format(rung="360p"), **kwargs) -> m3u8.M3U8:
    text = dvr.render(path, ended=kwargs.pop("ended", False), **kwargs)
    assert text is not None
    return m3u8.loads(text)


def complete(pl: m3u8.M3U8) -> list:
    """m3u8 gives the trailing parts (the open segment) a segment of their own, without URI."""
    return [s for s in pl.segments if s.uri]


def live(parts: int = 26, **kwargs) -> tuple[Dvr, LLTranscoder]:
    dvr = Dvr(window_seconds=kwargs.pop("window", 3600))
    tx = LLTranscoder(dvr, **kwargs)
    tx.run_for(parts)
    return dvr, tx


# --------------------------------------------------------------------------- parsing
def test_parser_reads_parts_hint_and_the_open_segment():
    _, tx = live(6)
    pl = parse_media_playlist(tx.text())
    assert pl.part_target == PART
    assert [p.uri for p in pl.segments[0].parts] == [f"r1_{n:06d}.m4s" for n in range(4)]
    assert [p.independent for p in pl.segments[0].parts] == [True, False, False, False]
    assert [p.uri for p in pl.open_parts] == ["r1_000004.m4s", "r1_000005.m4s"]
    assert pl.preload_hint == "r1_000006.m4s"
    assert pl.open_map_uri == "init_r1.mp4"


@pytest.mark.parametrize(
    "bad",
    [
        '#EXT-X-PART:DURATION=0.25,URI="a.m4s"\n',  # no PART-INF
        "#EXT-X-PART-INF:PART-TARGET=0.25\n#EXT-X-PART:DURATION=0.25\n",  # no URI
        '#EXT-X-PART-INF:PART-TARGET=0.25\n#EXT-X-PART:DURATION=x,URI="a.m4s"\n',
        '#EXT-X-PART-INF:PART-TARGET=0.25\n#EXT-X-PART:DURATION=0.25,URI="a.m4s",BYTERANGE="10@0"\n',
        "#EXT-X-PART-INF:PART-TARGET=-1\n",
    ],
)
def test_parser_refuses_unusable_parts(bad):
    with pytest.raises(PlaylistError):
        parse_media_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:1\n" + bad)


# --------------------------------------------------------------------------- the playlist
def test_server_control_part_inf_and_version():
    dvr, _ = live()
    text = dvr.render(CMAF.format(rung="360p"), ended=False)
    pl = m3u8.loads(text)
    assert pl.server_control.can_block_reload == "YES"
    assert pl.server_control.part_hold_back == pytest.approx(PART_HOLD_BACK_PART_TARGETS * PART)
    assert pl.server_control.part_hold_back >= 3 * PART
    assert pl.server_control.can_skip_until == pytest.approx(SKIP_TARGET_DURATIONS * 1)
    assert pl.part_inf.part_target == pytest.approx(PART)
    assert pl.version >= 9
    assert all(p.duration <= pl.part_inf.part_target for s in pl.segments for p in s.parts)


def test_parts_only_for_the_last_segments_and_the_open_one():
    dvr, tx = live(42)  # 10 closed segments, 2 open parts
    pl = served(dvr)
    segments = complete(pl)
    assert len(segments) == 10
    with_parts = [s for s in segments if s.parts]
    # Within three target durations of the end: the open parts (0.5 s) and the last three segments.
    assert [s.uri for s in with_parts] == [s.uri for s in segments[-3:]]
    for seg in with_parts:
        assert [p.independent for p in seg.parts] == ["YES", None, None, None]
        assert sum(p.duration for p in seg.parts) == pytest.approx(seg.duration)
    assert [p.uri for p in pl.segments[-1].parts] == ["r1_000040.m4s", "r1_000041.m4s"]
    text = dvr.render(CMAF.format(rung="360p"), ended=False)
    tail = text.split(segments[-1].uri, 1)[1]
    assert '#EXT-X-PART:DURATION=0.250000,URI="r1_000040.m4s",INDEPENDENT=YES' in tail
    assert 'URI="r1_000041.m4s"' in tail
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="r1_000042.m4s"' in tail


def test_without_parts_it_is_the_same_playlist_segment_for_segment():
    dvr, tx = live(42)
    text = dvr.render(CMAF.format(rung="360p"), ended=False)
    ll = m3u8.loads(text)
    # A client that knows nothing of LL-HLS: the lines it understands, nothing else.
    legacy = [
        line
        for line in text.splitlines()
        if not line.startswith(
            ("#EXT-X-PART", "#EXT-X-PRELOAD-HINT", "#EXT-X-SERVER-CONTROL", "#EXT-X-RENDITION-REPORT")
        )
    ]
    plain = m3u8.loads("\n".join(legacy))
    assert [(s.uri, s.duration) for s in plain.segments] == [(s.uri, s.duration) for s in complete(ll)]
    assert plain.media_sequence == ll.media_sequence and plain.segments[0].init_section.uri == "init_r1.mp4"
    assert all(s.program_date_time for s in plain.segments)


def test_ended_playlist_has_no_parts_or_hints():
    dvr, _ = live(20)
    text = dvr.render(CMAF.format(rung="360p"), ended=True)
    assert "#EXT-X-ENDLIST" in text
    for tag in ("#EXT-X-PART", "#EXT-X-PRELOAD-HINT", "#EXT-X-SERVER-CONTROL", "#EXT-X-RENDITION-REPORT"):
        assert tag not in text


def test_token_reaches_part_hint_and_report_uris():
    dvr = Dvr(window_seconds=3600)
    clock = [0.0]
    a, b = LLTranscoder(dvr, "360p", clock=clock), LLTranscoder(dvr, "720p", clock=clock)
    for _ in range(10):
        a.part()
        b.part()
    text = dvr.render(CMAF.format(rung="360p"), ended=False, query="token=abc")
    for line in text.splitlines():
        if 'URI="' in line:
            assert '?token=abc"' in line, line
        elif line and not line.startswith("#"):
            assert line.endswith("?token=abc")


def test_rendition_reports_name_every_other_rendition_at_its_last_part():
    dvr = Dvr(window_seconds=3600)
    clock = [0.0]
    txs = [LLTranscoder(dvr, rung, clock=clock) for rung in ("360p", "720p", "1080p")]
    for _ in range(9):
        for tx in txs:
            tx.part()
    txs[0].part()  # 360p is one part ahead
    text = dvr.render(CMAF.format(rung="720p"), ended=False)
    pl = m3u8.loads(text)
    reports = {r.uri: (r.last_msn, r.last_part) for r in pl.rendition_reports}
    assert reports == {"../1080p/index.m3u8": (2, 0), "../360p/index.m3u8": (2, 1)}
    # the TS renditions are another master's: never reported
    assert "ts/" not in text


def test_delta_update_skips_what_is_older_than_can_skip_until():
    dvr, _ = live(42)
    full = served(dvr)
    text = dvr.render(CMAF.format(rung="360p"), ended=False, skip=True)
    delta = m3u8.loads(text)
    assert delta.skip.skipped_segments == 10 - SKIP_TARGET_DURATIONS
    assert delta.media_sequence == full.media_sequence
    assert [s.uri for s in complete(delta)] == [s.uri for s in complete(full)[delta.skip.skipped_segments :]]
    # the first segment after the skip still names its init: the client may have dropped the skipped ones
    assert text.index("#EXT-X-MAP") < text.index(complete(delta)[0].uri)
    # a playlist shorter than the skip boundary is served whole
    short, _ = live(12)
    assert "#EXT-X-SKIP" not in short.render(CMAF.format(rung="360p"), ended=False, skip=True)


def test_delta_update_keeps_a_discontinuity_after_the_skipped_segments():
    dvr = Dvr(window_seconds=3600)
    clock = [0.0]
    LLTranscoder(dvr, run="r1", clock=clock).run_for(17)  # 4 segments
    tx2 = LLTranscoder(dvr, run="r2", clock=clock)
    tx2.run_for(30)  # 7 more: 11 in all, the first 5 skipped
    full = served(dvr)
    delta = served(dvr, skip=True)
    skipped = delta.skip.skipped_segments
    assert skipped == 5
    assert [s.discontinuity for s in complete(delta)] == [s.discontinuity for s in complete(full)[skipped:]]
    assert complete(full)[4].discontinuity and not complete(delta)[0].discontinuity
    assert complete(delta)[0].init_section.uri == "init_r2.mp4"


# --------------------------------------------------------------------------- runs, public view, clean-up
def test_a_new_runs_parts_wait_for_its_first_segment():
    dvr = Dvr(window_seconds=3600)
    clock = [0.0]
    LLTranscoder(dvr, run="r1", clock=clock).run_for(9)
    tx2 = LLTranscoder(dvr, run="r2", clock=clock)
    tx2.run_for(2)
    text = dvr.render(CMAF.format(rung="360p"), ended=False)
    assert "r2_" not in text  # no parts under the old run's EXT-X-MAP
    tx2.run_for(3)  # its first segment closed: discontinuity, its init, then its parts
    last = complete(served(dvr))[-1]
    assert last.discontinuity and last.init_section.uri == "init_r2.mp4" and last.parts


def test_viewers_get_parts_only_of_public_segments():
    dvr = Dvr(window_seconds=3600)
    clock = [0.0]
    dvr.set_public(False, 0.0, T0)
    tx = LLTranscoder(dvr, clock=clock)
    tx.run_for(10)  # backstage
    assert dvr.render(tx.playlist, ended=False, public=True) is None
    dvr.set_public(True, clock[0], T0 + timedelta(seconds=clock[0]))
    tx.run_for(2)  # the open segment began before: not public
    edge = live_edge(dvr.renditions[tx.playlist], public=True)
    assert edge is None
    tx.run_for(14)
    pl = served(dvr, public=True)
    member = served(dvr)
    # Numbered as for members (another replica made public a moment later numbers alike).
    member_uris = [s.uri for s in member.segments]
    assert pl.media_sequence == member.media_sequence + member_uris.index(pl.segments[0].uri) > 0
    assert all(p.uri.startswith("r1_") for s in pl.segments for p in s.parts)
    assert len(complete(member)) > len(complete(pl))
    public_parts = {p.uri for s in pl.segments for p in s.parts}
    assert public_parts and all(dvr.public_file(f"hls/cmaf/360p/{uri}") for uri in public_parts)
    backstage_part = "hls/cmaf/360p/r1_000001.m4s"
    assert not dvr.public_file(backstage_part)


def test_parts_leave_the_index_and_the_disk_once_out_of_the_part_window():
    dvr, tx = live(42)
    r = dvr.renditions[tx.playlist]
    listed = {p.path for e in r.parts for p in e.parts} | {p.path for p in r.open_parts}
    assert all(dvr.keeps(p) for p in listed)
    old = "hls/cmaf/360p/r1_000001.m4s"
    assert not dvr.keeps(old) and old in dvr.pending_delete
    assert old in dvr.due(tx.clock[0] + 3600)
    assert "hls/cmaf/360p/r1_000001.m4s" not in dvr.latest


def test_clear_drops_parts_too():
    dvr, tx = live(20)
    doomed = dvr.clear()
    assert "hls/cmaf/360p/r1_000008.m4s" in doomed
    assert not dvr.renditions[tx.playlist].parts


def test_a_part_listed_before_its_bytes_arrived_is_not_served_nor_anything_after_it():
    dvr, tx = live(5)
    tx.part(upload=False, publish=False)
    tx.part()
    r = dvr.renditions[tx.playlist]
    assert [p.upstream.rsplit("/", 1)[1] for p in r.open_parts] == ["r1_000004.m4s"]
    assert r.hint is None


# --------------------------------------------------------------------------- blocking reload
def test_blocking_reload_states():
    dvr, tx = live(10)  # segments 0, 1 closed; segment 2 has parts 0 and 1
    path = tx.playlist
    state = lambda msn, part=None: dvr.wait_state(path, False, msn, part, ended=False)  # noqa: E731
    assert state(1) == "ready"
    assert state(1, 3) == "ready"
    assert state(2) == "wait"  # a segment not complete yet
    assert state(2, 1) == "ready"
    assert state(2, 2) == "wait"  # the hinted part
    assert state(3, 0) == "wait"
    assert state(3) == "wait"
    assert state(3, 3) == "wait"
    assert state(4) == "bad"  # beyond the last complete segment + 2
    assert state(3, 12) == "bad"  # more than 3 s of parts ahead
    assert state(0, 0) == "ready"  # old requests get the current playlist
    assert dvr.wait_state(path, False, 9, None, ended=True) == "ready"
    assert dvr.wait_state("hls/cmaf/none/index.m3u8", False, 0, None, ended=False) == "wait"
    tx.part()
    assert state(2, 2) == "ready"


def test_the_hinted_part_is_servable_before_a_playlist_lists_it_as_the_open_segment_would_be():
    dvr, tx = live(10)
    hinted = f"{tx.dir}/{tx.part_name(tx.part_number)}"
    assert dvr.renditions[tx.playlist].hint == hinted
    tx.part(publish=False)
    assert dvr.public_file(hinted)  # public stream: viewers may get it at once
    private = Dvr(window_seconds=3600)
    private.set_public(False, 0.0, T0)
    ptx = LLTranscoder(private)
    ptx.run_for(10)
    hinted = f"{ptx.dir}/{ptx.part_name(ptx.part_number)}"
    ptx.part(publish=False)
    assert not private.public_file(hinted)  # backstage: members only


def test_a_delta_update_that_starts_on_a_new_period_says_so():
    dvr = Dvr(window_seconds=3600)
    clock = [0.0]
    LLTranscoder(dvr, run="r1", clock=clock).run_for(17)  # 4 segments
    tx2 = LLTranscoder(dvr, run="r2", clock=clock)
    tx2.run_for(25)  # 6 more: the 4 of r1 are skipped, the first shown is r2's first
    text = dvr.render(CMAF.format(rung="360p"), ended=False, skip=True)
    delta = m3u8.loads(text)
    assert delta.skip.skipped_segments == 4
    first = complete(delta)[0]
    assert first.uri == "r2_segr2_000000.m4s" and first.discontinuity
    assert first.init_section.uri == "init_r2.mp4"
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:0" in text  # the full playlist's: the skipped segments count
