"""Real ffmpeg HLS output PUT to a real origin: what players then get from it."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urljoin

import m3u8
import pytest

from tests.fixtures.media import ffprobe_json, wait_for
from tests.fixtures.origin import SMALL_LADDER, LadderRung, origins, transcoders  # noqa: F401  (fixtures)

pytestmark = pytest.mark.media

MASTER = "hls/cmaf/master.m3u8"


def media_playlist(origin, rung: str = "360p", fmt: str = "cmaf", **kwargs) -> m3u8.M3U8:
    response = origin.get(f"hls/{fmt}/{rung}/index.m3u8", **kwargs)
    response.raise_for_status()
    return m3u8.loads(response.text, uri=origin.url(f"hls/{fmt}/{rung}/index.m3u8"))


def segments_available(origin, n: int, rung: str = "360p", fmt: str = "cmaf"):
    def check():
        pl = media_playlist(origin, rung, fmt)
        return pl if len(pl.segments) >= n else None

    return check


def decode(origin, tmp_path: Path, segment: m3u8.Segment, base: str) -> dict:
    """init + segment concatenated, as a player feeds them to its decoder, through ffprobe."""
    data = b""
    if segment.init_section is not None:
        init = origin.get(urljoin(base, segment.init_section.uri).replace(origin.base + "/", ""))
        init.raise_for_status()
        data += init.content
    media = origin.get(urljoin(base, segment.uri).replace(origin.base + "/", ""))
    media.raise_for_status()
    data += media.content
    path = tmp_path / f"probe-{abs(hash(segment.uri))}.bin"
    path.write_bytes(data)
    return ffprobe_json(str(path), "-count_frames", "-select_streams", "v:0")


def test_cmaf_ladder_is_served_as_uploaded_and_decodable(origins, transcoders, tmp_path):
    origin = origins.start(phase="live")
    transcoder = transcoders.start(origin)
    wait_for(segments_available(origin, 3), timeout=30, what="3 segments in the 360p playlist")
    wait_for(segments_available(origin, 3, "180p"), timeout=15, what="3 segments in the 180p playlist")

    master_response = origin.get(MASTER)
    assert master_response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert master_response.headers["cache-control"] == "no-cache"
    assert master_response.headers["access-control-allow-origin"] == "*"
    master = m3u8.loads(master_response.text)
    assert master.is_variant
    assert sorted((p.uri, p.stream_info.resolution) for p in master.playlists) == [
        ("180p/index.m3u8", (320, 180)),
        ("360p/index.m3u8", (640, 360)),
    ]

    for rung in SMALL_LADDER:
        base = origin.url(f"hls/cmaf/{rung.name}/index.m3u8")
        response = origin.get(f"hls/cmaf/{rung.name}/index.m3u8")
        assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        pl = m3u8.loads(response.text)
        assert not pl.is_endlist
        assert all(s.program_date_time is not None for s in pl.segments)
        assert pl.segments[0].init_section.uri == f"init_r1_{rung.name}.mp4"
        probe = decode(origin, tmp_path, pl.segments[-1], base)
        video = probe["streams"][0]
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", rung.width, rung.height)
        assert int(video["nb_read_frames"]) >= 20  # a whole 1 s segment at 25 fps

    segment = origin.get(f"hls/cmaf/360p/{pl.segments[0].uri}".replace("180p", "360p"))
    assert segment.headers["content-type"] == "video/iso.segment"
    assert "immutable" in segment.headers["cache-control"]
    # Answered from memory (it was just uploaded) with what a file answer has: validators, ranges
    assert segment.headers["accept-ranges"] == "bytes" and segment.headers["last-modified"]
    revalidated = origin.get(
        f"hls/cmaf/360p/{pl.segments[0].uri}".replace("180p", "360p"),
        headers={"If-None-Match": segment.headers["etag"]},
    )
    assert revalidated.status_code == 304
    init = origin.get("hls/cmaf/360p/init_r1_360p.mp4")
    assert init.headers["content-type"] == "video/mp4"
    ranged = origin.get("hls/cmaf/360p/init_r1_360p.mp4", headers={"Range": "bytes=0-7"})
    assert ranged.status_code == 206 and ranged.content == init.content[:8]

    status = origin.status()
    assert status["dvrWindowSeconds"] == 60
    assert set(status["playlists"]) >= {MASTER, "hls/cmaf/360p/index.m3u8", "hls/cmaf/180p/index.m3u8"}
    assert status["dvrAvailableSeconds"] >= 3
    metrics = origin.metrics()
    assert 'onair_origin_dvr_segments{playlist="hls/cmaf/360p/index.m3u8"}' in metrics
    assert 'onair_origin_uploads_total{kind="segment",result="stored"}' in metrics
    assert 'onair_origin_http_requests_total{status="200"}' in metrics
    assert "onair_origin_http_sent_bytes_total" in metrics

    # ffmpeg's SIGINT uploads ENDLIST; a live stream's playlist must not end because of it.
    listed = len(media_playlist(origin).segments)
    transcoder.stop()
    time.sleep(1.5)
    after = media_playlist(origin)
    assert not after.is_endlist
    assert len(after.segments) >= listed


def test_dvr_keeps_segments_the_transcoder_deletes(origins, transcoders):
    origin = origins.start(phase="live", dvr_window_seconds=60)
    transcoders.start(origin, list_size=3)
    pl = wait_for(segments_available(origin, 8), timeout=40, what="8 segments in the DVR")
    first = pl.segments[0].uri
    assert first == "seg_r1_00000.m4s"
    # ffmpeg (list of 3, delete_segments) has DELETEd it by now; the DVR ignored that.
    assert origin.get(f"hls/cmaf/360p/{first}").status_code == 200
    assert (origin.data_dir / "hls/cmaf/360p" / first).is_file()


def test_transcoder_restart_is_a_discontinuity_with_its_own_init(origins, transcoders, tmp_path):
    origin = origins.start(phase="live")
    # Names without run id: the second ffmpeg overwrites the first one's files in place,
    # exactly what the origin must survive.
    names = dict(segment_name="seg_%05d.m4s", init_name="init_%v.mp4")
    first = transcoders.start(origin, **names)
    wait_for(segments_available(origin, 3), timeout=30, what="first run segments")
    first.stop()
    before = media_playlist(origin)
    # lavfi + x264 are deterministic: a restart with identical settings would re-upload
    # byte-identical segments, which the origin (rightly) takes for retries. Real cameras never do.
    other_bytes = tuple(LadderRung(r.name, r.width, r.height, r.bitrate_kbps + 100) for r in SMALL_LADDER)
    second = transcoders.start(origin, ladder=other_bytes, **names)
    wait_for(
        lambda: len(media_playlist(origin).segments) >= len(before.segments) + 3, timeout=30, what="second run segments"
    )
    second.stop()
    text = origin.get("hls/cmaf/360p/index.m3u8").text
    pl = m3u8.loads(text)
    assert not pl.is_endlist
    flags = [s.discontinuity for s in pl.segments]
    assert flags.count(True) == 1, text
    boundary = flags.index(True)
    assert boundary == len(before.segments)
    # Both runs named their first segment seg_00000.m4s: the origin kept both, under two names.
    uris = [s.uri for s in pl.segments]
    assert len(set(uris)) == len(uris), text
    assert uris[0] == "seg_00000.m4s" and uris[boundary] == "seg_00000~2.m4s"
    assert text.count("#EXT-X-MAP") == 2
    # The sequence never goes back.
    assert pl.media_sequence == 0
    base = origin.url("hls/cmaf/360p/index.m3u8")
    # Whole segments decode with their period's init; the one cut short by SIGINT has fewer frames.
    for segment, frames in (
        (pl.segments[0], 20),
        (pl.segments[boundary - 1], 1),
        (pl.segments[boundary], 20),
        (pl.segments[-2], 20),
    ):
        probe = decode(origin, tmp_path, segment, base)
        assert int(probe["streams"][0]["nb_read_frames"]) >= frames, segment.uri


def test_dvr_survives_an_origin_restart(origins, transcoders, tmp_path):
    origin = origins.start(phase="live")
    first = transcoders.start(origin, run_id="r1")
    wait_for(segments_available(origin, 5), timeout=30, what="segments before the restart")
    first.stop()
    time.sleep(1.5)  # one journal flush
    before = origin.get("hls/cmaf/360p/index.m3u8").text
    origins.restart(origin, phase="live")
    assert origin.get("hls/cmaf/360p/index.m3u8").text == before
    assert "DVR restored from the journal" in origin.log_text()
    pl = m3u8.loads(before)
    decode(origin, tmp_path, pl.segments[0], origin.url("hls/cmaf/360p/index.m3u8"))
    # the next transcoder run continues the same playlist after a discontinuity
    transcoders.start(origin, run_id="r2")
    wait_for(lambda: len(media_playlist(origin).segments) >= len(pl.segments) + 2, timeout=30, what="new segments")
    after = media_playlist(origin)
    assert [s.uri for s in after.segments[: len(pl.segments)]] == [s.uri for s in pl.segments]
    assert after.segments[len(pl.segments)].discontinuity
    assert after.media_sequence == pl.media_sequence


def test_ended_phase_serves_the_dvr_as_vod(origins, transcoders):
    origin = origins.start(phase="live")
    transcoder = transcoders.start(origin)
    wait_for(segments_available(origin, 3), timeout=30, what="segments")
    transcoder.stop()
    assert not media_playlist(origin).is_endlist
    origin.set_phase("ended")
    pl = media_playlist(origin)
    assert pl.is_endlist and len(pl.segments) >= 3
    assert origin.get(f"hls/cmaf/360p/{pl.segments[0].uri}").status_code == 200


def last_msn(origin, rung: str, fmt: str = "cmaf") -> int:
    pl = media_playlist(origin, rung, fmt)
    return pl.media_sequence + len(pl.segments) - 1


@pytest.mark.parametrize("fmt", ["cmaf", "ts"])
def test_a_master_playlist_asked_for_mid_segment_is_answered_when_the_next_segment_is_listed(origins, transcoders, fmt):
    """Stock hls.js keeps for good how old the live edge was when it joined: every viewer joins a fresh one."""
    origin = origins.start(phase="live")
    transcoders.start(origin, fmt=fmt)
    wait_for(segments_available(origin, 3, fmt=fmt), timeout=30, what="3 segments")
    wait_for(segments_available(origin, 3, "180p", fmt=fmt), timeout=15, what="3 segments in 180p")
    for _ in range(3):  # three joins, each half a (1 s) segment after a listing
        seen = last_msn(origin, "360p", fmt)
        wait_for(lambda: last_msn(origin, "360p", fmt) > seen, timeout=5, interval=0.02, what="a listing")
        time.sleep(0.5)
        before = {rung.name: last_msn(origin, rung.name, fmt) for rung in SMALL_LADDER}
        master = origin.get(f"hls/{fmt}/master.m3u8")
        assert master.status_code == 200 and m3u8.loads(master.text).is_variant
        after = {rung.name: last_msn(origin, rung.name, fmt) for rung in SMALL_LADDER}
        assert all(after[name] > before[name] for name in before), (before, after)


def test_mpegts_ladder(origins, transcoders, tmp_path):
    origin = origins.start(phase="live")
    transcoders.start(origin, fmt="ts")
    pl = wait_for(segments_available(origin, 2, fmt="ts"), timeout=30, what="TS segments")
    assert pl.segments[0].init_section is None
    response = origin.get(f"hls/ts/360p/{pl.segments[-1].uri}")
    assert response.headers["content-type"] == "video/mp2t"
    path = tmp_path / "seg.ts"
    path.write_bytes(response.content)
    probe = ffprobe_json(str(path))
    assert {s["codec_name"] for s in probe["streams"]} == {"h264", "aac"}


@pytest.mark.slow
def test_dvr_window_holds_what_was_asked_slides_and_clears(origins, transcoders):
    origin = origins.start(phase="live", dvr_window_seconds=30)
    transcoders.start(origin, segment_seconds=1, list_size=4)
    wait_for(lambda: media_playlist(origin).media_sequence >= 8, timeout=75, what="the window to slide by 8 segments")
    pl = media_playlist(origin)
    total = sum(s.duration for s in pl.segments)
    # The shortest tail covering the window: at least 30 s, less than one segment more.
    assert 30 - 0.05 <= total < 30 + max(s.duration for s in pl.segments) + 0.05, total
    assert pl.segments[0].uri != "seg_r1_00000.m4s"
    # Slid-out files are deleted once their grace (10 s) has passed.
    wait_for(
        lambda: not (origin.data_dir / "hls/cmaf/360p/seg_r1_00000.m4s").exists(),
        timeout=20,
        what="the first segment's file to be deleted",
    )
    assert origin.get("hls/cmaf/360p/seg_r1_00000.m4s").status_code == 404
    assert origin.status()["dvrAvailableSeconds"] >= 30 - 0.05

    last_before = pl.segments[-1].uri
    result = origin.clear_dvr()
    assert result["cleared"] and result["deletedFiles"] >= 30
    assert origin.get(f"hls/cmaf/360p/{pl.segments[0].uri}").status_code == 404
    on_disk = sorted(p.name for p in (origin.data_dir / "hls/cmaf/360p").iterdir())
    assert "init_r1_360p.mp4" in on_disk  # still needed by what comes next
    assert len(on_disk) <= 6, on_disk  # only segments uploaded after the clear

    # New segments keep coming; the window restarts from them.
    after = wait_for(segments_available(origin, 2), timeout=20, what="segments after the clear")
    assert after.media_sequence > pl.media_sequence
    assert sum(s.duration for s in after.segments) < 10
    assert last_before not in [s.uri for s in after.segments]
    assert after.segments[0].init_section.uri == "init_r1_360p.mp4"
