"""Publish over RTMP -> every packaging of every rung, valid, aligned, and a screenshot."""

from __future__ import annotations

import socket
from pathlib import Path

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from tests.fixtures.media import ffprobe_json, first_frame_is_keyframe, free_port, wait_for

pytestmark = [pytest.mark.media, pytest.mark.timeout(180)]


def _joined(tmp: Path, *parts: Path) -> Path:
    target = tmp / ("joined-" + "-".join(p.name for p in parts))
    target.write_bytes(b"".join(p.read_bytes() for p in parts))
    return target


def _media(out: Path, kind: str, rung: str) -> m3u8.M3U8:
    return m3u8.loads((out / "hls" / kind / rung / "index.m3u8").read_text())


def _live_from_rtmp(tx, rtmp_server, publishers, playlist: str, segments: int) -> tuple[Path, m3u8.M3U8]:
    """Publish 320x180 to ``main`` over RTMP, go live, and wait for ``segments`` in the transcoder's ``playlist``."""
    publishers.rtmp(rtmp_server.url("main"), width=320, height=180)
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    path = tx.wait_file(playlist, 40)
    listed = wait_for(
        lambda: (lambda p: p if len(p.segments) >= segments else None)(m3u8.loads(path.read_text())),
        30,
        what=f"{segments} segments in {playlist}",
    )
    return path, listed


@pytest.mark.slow
def test_publish_gives_hls_cmaf_ts_dash_and_a_screenshot(rtmp_server, publishers, transcoder_agent, tmp_path):
    tx = transcoder_agent.start(main_url=rtmp_server.url("main"), tracks=["360p", "240p"], preset="veryfast")
    publishers.rtmp(rtmp_server.url("main"), width=640, height=360)
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected in backstage")
    assert tx.status()["broadcasting"] is False
    assert not (tx.out / "hls").exists(), "nothing is published before broadcasting starts"

    tx.put_desired(phase="live", broadcasting=True)
    out = tx.out
    tx.wait_file("hls/cmaf/master.m3u8", 60)
    tx.wait_file("hls/ts/master.m3u8", 30)
    # Three segments per rendition so alignment and the window are visible.
    wait_for(
        lambda: all(len(_media(out, k, r).segments) >= 3 for k in ("cmaf", "ts") for r in ("360p", "240p")),
        60,
        what="three segments in every media playlist",
    )

    master = m3u8.loads((out / "hls/cmaf/master.m3u8").read_text())
    assert master.is_variant
    variants = {p.uri: p.stream_info for p in master.playlists}
    assert set(variants) == {"360p/index.m3u8", "240p/index.m3u8"}
    assert variants["360p/index.m3u8"].resolution == (640, 360)
    assert variants["240p/index.m3u8"].resolution == (426, 240)
    for info in variants.values():
        assert info.bandwidth > 0 and "avc1." in info.codecs and "mp4a." in info.codecs

    for rung in ("360p", "240p"):
        media = _media(out, "cmaf", rung)
        assert media.segment_map and media.segment_map[0].uri.endswith(".mp4")
        assert all(s.program_date_time is not None for s in media.segments)
        assert not media.is_endlist
        init = out / "hls/cmaf" / rung / media.segment_map[0].uri
        first = out / "hls/cmaf" / rung / media.segments[0].uri
        joined = _joined(tmp_path, init, first)
        assert first_frame_is_keyframe(str(joined))
        probe = ffprobe_json(str(joined))
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert (video["width"], video["height"]) == ((640, 360) if rung == "360p" else (426, 240))
        assert video["profile"] in ("Main", "High")

    # Keyframes are aligned: every rung cuts its segments at the same instants.
    durations = {rung: [round(s.duration, 2) for s in _media(out, "cmaf", rung).segments] for rung in ("360p", "240p")}
    n = min(len(d) for d in durations.values())
    assert durations["360p"][:n] == durations["240p"][:n]
    assert all(abs(d - 2.0) < 0.05 for d in durations["360p"][: n - 1])

    ts_master = m3u8.loads((out / "hls/ts/master.m3u8").read_text())
    assert ts_master.is_variant and len(ts_master.playlists) == 2
    ts_media = _media(out, "ts", "240p")
    assert ts_media.target_duration >= 2 and all(s.uri.endswith(".ts") for s in ts_media.segments)
    assert first_frame_is_keyframe(str(out / "hls/ts/240p" / ts_media.segments[0].uri))

    mpd_path = tx.wait_file("dash/manifest.mpd", 30)
    mpd = MPEGDASHParser.parse(mpd_path.read_text())
    assert mpd.type == "dynamic"
    sets = mpd.periods[0].adaptation_sets
    video_set = next(a for a in sets if a.content_type == "video")
    assert sorted(r.height for r in video_set.representations) == [240, 360]
    template = video_set.representations[0].segment_templates[0]
    assert (
        out / "dash" / template.initialization.replace("$RepresentationID$", video_set.representations[0].id)
    ).exists()

    shot = tx.wait_file("screenshot.jpg", 30)
    info = ffprobe_json(str(shot))["streams"][0]
    assert info["codec_name"] == "mjpeg" and info["width"] == 1080

    status = tx.wait_status(lambda s: s.get("speed") is not None and s.get("qualities"), 20, "speed and qualities")
    assert status["activeSource"] == "main" and status["broadcasting"] is True
    assert status["qualities"] == ["360p", "240p"]
    assert 0.1 < status["speed"] < 10
    assert status["lastSegmentAt"]
    metrics = tx.metrics()
    assert 'onair_transcoder_segments_written_total{format="cmaf",livestream="default/test"}' in metrics
    assert "onair_transcoder_speed{" in metrics

    # Stopping the broadcast ends every playlist; the readers (and selection) keep running.
    tx.put_desired(broadcasting=False)
    wait_for(
        lambda: all(_media(out, k, r).is_endlist for k in ("cmaf", "ts") for r in ("360p", "240p")),
        30,
        what="ENDLIST in every media playlist",
    )
    status = tx.wait_status(lambda s: not s["broadcasting"], 10, "encoder stopped")
    assert status["activeSource"] == "main" and status["qualities"] == [] and status.get("speed") is None
    assert tx.encoder_pid() is None
    final = MPEGDASHParser.parse((out / "dash/manifest.mpd").read_text())
    assert final.type == "static"


@pytest.mark.slow
def test_low_latency_one_second_segments_and_low_latency_dash(rtmp_server, publishers, transcoder_agent):
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        tracks=["180p"],
        source_size=(320, 180),
        low_latency=True,
        segment_seconds=1,
        hls_mpegts=False,
        screenshot_interval_seconds=0,
    )
    path, playlist = _live_from_rtmp(tx, rtmp_server, publishers, "hls/cmaf/180p/index.m3u8", 4)
    assert all(abs(s.duration - 1.0) < 0.05 for s in playlist.segments[:-1])
    assert playlist.target_duration == 1
    mpd_text = tx.wait_file("dash/manifest.mpd").read_text()
    mpd = MPEGDASHParser.parse(mpd_text)
    assert mpd.type == "dynamic"
    video = next(a for a in mpd.periods[0].adaptation_sets if a.content_type == "video")
    template = video.representations[0].segment_templates[0]
    # LL-DASH: segments addressed by $Number$ (a SegmentTimeline would list one only once complete),
    # 1 s long as in HLS; their chunks are streamed to the origin as ffmpeg writes them, which is
    # what the availabilityTimeOffset ffmpeg writes promises (tests/media/test_transcoder_lldash.py).
    assert not template.segment_timelines and "$Number" in template.media
    assert template.duration == template.timescale


@pytest.mark.slow
@pytest.mark.parametrize("zero_latency", [False, True])
def test_zero_latency_encoding_leaves_out_b_frames(rtmp_server, publishers, transcoder_agent, zero_latency):
    """The standard tier's ``zeroLatencyEncoding``: x264 at the production preset without B-frames
    (nor the lookahead the figures in the README show), with whole segments as usual."""
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        tracks=["180p"],
        source_size=(320, 180),
        segment_seconds=1,
        hls_cmaf=False,
        dash=False,
        screenshot_interval_seconds=0,
        preset="veryfast",  # the production default: B-frames unless told otherwise
        zero_latency_encoding=zero_latency,
    )
    path, playlist = _live_from_rtmp(tx, rtmp_server, publishers, "hls/ts/180p/index.m3u8", 3)
    assert all(abs(s.duration - 1.0) < 0.05 for s in playlist.segments[:-1])
    segment = path.parent / playlist.segments[1].uri
    probe = ffprobe_json(str(segment), "-select_streams", "v:0", "-show_frames", "-show_entries", "frame=pict_type")
    types = [frame["pict_type"] for frame in probe["frames"]]
    assert types and types[0] == "I"
    assert ("B" in types) is not zero_latency, types


@pytest.mark.slow
def test_target_duration_is_the_segment_duration_at_ntsc_frame_rates(publishers, transcoder_agent):
    """A 29.97 fps source makes 2 s segments of 60 frames, 2.002 s: EXT-X-TARGETDURATION is 2 (RFC 8216
    4.3.3.1: every EXTINF rounded to the nearest integer), in the CMAF and the MPEG-TS playlists alike.
    Stock hls.js starts three target durations behind the live edge: a 3 would cost every viewer 3 s."""
    port = free_port(socket.SOCK_DGRAM)
    # MPEG-TS over SRT (RTMP: the test below); ffmpeg listens, the transcoder pulls.
    publishers.custom(
        [
            "-loglevel", "error",
            "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30000/1001",
            "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", "30", "-c:a", "aac", "-ar", "48000",
            "-f", "mpegts", f"srt://127.0.0.1:{port}?mode=listener&latency=200000",
        ]
    )  # fmt: skip
    tx = transcoder_agent.start(
        pull_uris=[f"srt://127.0.0.1:{port}?mode=caller&latency=200000"],
        tracks=["180p"],
        source_size=(320, 180),
        dash=False,
        screenshot_interval_seconds=0,
    )
    tx.wait_status(lambda s: s.get("activeSource") == "pull", 40, "pull source selected")
    tx.put_desired(phase="live", broadcasting=True)
    wait_for(
        lambda: all(
            (out := tx.out / "hls" / k / "180p/index.m3u8").is_file() and len(m3u8.loads(out.read_text()).segments) >= 3
            for k in ("cmaf", "ts")
        ),
        60,
        what="three segments in both media playlists",
    )
    for kind in ("cmaf", "ts"):
        media = _media(tx.out, kind, "180p")
        durations = [s.duration for s in media.segments]
        assert all(abs(d - 2.002) < 0.0015 for d in durations[:-1]), (kind, durations)
        assert media.target_duration == 2, (kind, media.target_duration, durations)


@pytest.mark.slow
def test_an_ntsc_rate_over_rtmp_is_encoded_at_that_rate(rtmp_server, publishers, transcoder_agent):
    """OBS at 29.97 fps over RTMP: FLV's whole-millisecond timestamps make ffmpeg print estimates
    ("29 fps, 29.97 tbr"); the transcoder encodes at the rate they point to, 30000/1001, so 2 s
    segments are 60 frames (2.002 s) with none dropped, not 58 frames at 29 fps."""
    publishers.custom(
        [
            "-loglevel", "error",
            "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30000/1001",
            "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", "60", "-c:a", "aac", "-ar", "48000", "-f", "flv", rtmp_server.url("main"),
        ]
    )  # fmt: skip
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        tracks=["180p"],
        source_size=(320, 180),
        dash=False,
        screenshot_interval_seconds=0,
    )
    tx.put_desired(phase="live", broadcasting=True)
    wait_for(
        lambda: (out := tx.out / "hls/ts/180p/index.m3u8").is_file() and len(m3u8.loads(out.read_text()).segments) >= 3,
        60,
        what="three segments",
    )
    media = _media(tx.out, "ts", "180p")
    durations = [s.duration for s in media.segments]
    assert all(abs(d - 2.002) < 0.0015 for d in durations[:-1]), durations
    segment = tx.out / "hls/ts/180p" / media.segments[1].uri
    frames = ffprobe_json(str(segment), "-count_frames", "-select_streams", "v:0")["streams"][0]["nb_read_frames"]
    assert int(frames) == 60, f"{frames} frames in a 2 s segment of a 29.97 fps source"
