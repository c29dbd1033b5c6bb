from datetime import datetime, timedelta, timezone

import m3u8

from onair.agent.hls import parse_media_playlist, target_duration_for
from onair.agent.transcoder.playlists import MediaPlaylist, public_master

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)

FFMPEG_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="r1_init_720p.mp4"
#EXTINF:2.000000,
r1_000000.m4s
#EXTINF:1.966667,
r1_000001.m4s
#EXT-X-ENDLIST
"""


def test_parse_ffmpeg_media_playlist():
    parsed = parse_media_playlist(FFMPEG_PLAYLIST)
    assert parsed.open_map_uri == "r1_init_720p.mp4" and parsed.endlist and parsed.target_duration == 2
    assert [(s.uri, s.duration) for s in parsed.segments] == [("r1_000000.m4s", 2.0), ("r1_000001.m4s", 1.966667)]


def _fill(playlist, run, n, start, init="init.mp4", step=2.0):
    for i in range(n):
        playlist.add(f"{run}_{i}.m4s", step, run, f"{run}_{init}", start + timedelta(seconds=step * (i + 1)))


def test_window_slides_with_media_sequence_and_contiguous_program_date_time():
    playlist = MediaPlaylist(window=3, version=7)
    _fill(playlist, "r1", 5, T0)
    parsed = m3u8.loads(playlist.render())
    assert parsed.media_sequence == 2 and [s.uri for s in parsed.segments] == ["r1_2.m4s", "r1_3.m4s", "r1_4.m4s"]
    assert parsed.segment_map[0].uri == "r1_init.mp4"
    pdts = [s.program_date_time for s in parsed.segments]
    assert pdts == [T0 + timedelta(seconds=4 + 2 * i) for i in range(3)]
    assert not parsed.is_endlist and parsed.target_duration == 2


def test_new_run_is_a_discontinuity_with_its_own_init_and_the_sequences_never_reset():
    playlist = MediaPlaylist(window=4, version=7)
    _fill(playlist, "r1", 3, T0)
    # The encoder crashed and came back 5 s later as run r2.
    _fill(playlist, "r2", 2, T0 + timedelta(seconds=11))
    text = playlist.render()
    parsed = m3u8.loads(text)
    assert [s.uri for s in parsed.segments] == ["r1_1.m4s", "r1_2.m4s", "r2_0.m4s", "r2_1.m4s"]
    assert [s.discontinuity for s in parsed.segments] == [False, False, True, False]
    assert [s.init_section.uri for s in parsed.segments] == ["r1_init.mp4"] * 2 + ["r2_init.mp4"] * 2
    assert text.count("#EXT-X-MAP") == 2
    # Media time stood still for the outage: the date moves on with the wall clock.
    assert parsed.segments[2].program_date_time == T0 + timedelta(seconds=11)
    assert "#EXT-X-ENDLIST" not in text

    # Slide the discontinuity out of the window: its tag becomes the discontinuity sequence.
    for i in range(2, 5):
        playlist.add(f"r2_{i}.m4s", 2.0, "r2", "r2_init.mp4", T0 + timedelta(seconds=13 + 2 * i))
    parsed = m3u8.loads(playlist.render())
    assert parsed.media_sequence == 4 and parsed.discontinuity_sequence == 1
    assert not any(s.discontinuity for s in parsed.segments)
    assert parsed.segment_map[0].uri == "r2_init.mp4"


def test_discontinuity_sequence_counts_each_tag_once():
    playlist = MediaPlaylist(window=2, version=6)
    runs = ["a", "b", "c"]
    for n, run in enumerate(runs):
        playlist.add(f"{run}.ts", 2.0, run, None, T0 + timedelta(seconds=2 * (n + 1)))
    parsed = m3u8.loads(playlist.render())
    assert [s.uri for s in parsed.segments] == ["b.ts", "c.ts"]
    assert parsed.discontinuity_sequence == 1  # b's tag left with a
    assert [s.discontinuity for s in parsed.segments] == [False, True]
    assert "EXT-X-MAP" not in playlist.render()


def test_endlist_only_when_ended_and_cleared_by_a_new_segment():
    playlist = MediaPlaylist(window=5, version=7)
    _fill(playlist, "r1", 2, T0)
    playlist.end()
    assert m3u8.loads(playlist.render()).is_endlist
    playlist.add("r2_0.m4s", 2.0, "r2", "r2_init.mp4", T0 + timedelta(seconds=60))
    assert not m3u8.loads(playlist.render()).is_endlist


def test_program_date_time_ignores_jitter_and_never_goes_back():
    playlist = MediaPlaylist(window=5, version=7)
    playlist.add("a.m4s", 2.0, "r", None, T0 + timedelta(seconds=2))
    playlist.add("b.m4s", 2.0, "r", None, T0 + timedelta(seconds=4.4))  # late by 0.4 s: jitter
    playlist.add("c.m4s", 2.0, "r", None, T0 + timedelta(seconds=5))  # early: a burst
    pdts = [e.program_date_time for e in playlist.entries]
    assert pdts == [T0, T0 + timedelta(seconds=2), T0 + timedelta(seconds=4)]


def test_public_master_points_at_the_public_media_playlists():
    text = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-STREAM-INF:BANDWIDTH=985600,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2"
360p/r1.m3u8

#EXT-X-STREAM-INF:BANDWIDTH=545600,RESOLUTION=426x240,CODECS="avc1.4d4015,mp4a.40.2"
240p/r1.m3u8
"""
    master = m3u8.loads(public_master(text, "r1"))
    assert [p.uri for p in master.playlists] == ["360p/index.m3u8", "240p/index.m3u8"]
    assert master.playlists[0].stream_info.codecs == "avc1.4d401e,mp4a.40.2"


def test_resume_round_trips_what_was_rendered():
    playlist = MediaPlaylist(window=4, version=7)
    _fill(playlist, "r1", 3, T0)
    _fill(playlist, "r2", 3, T0 + timedelta(seconds=20))
    playlist.end()
    text = playlist.render()
    resumed = MediaPlaylist.resume(text, window=4, version=7)
    assert resumed.render() == text
    resumed.add("r3_0.m4s", 2.0, "r3", "r3_init.mp4", T0 + timedelta(seconds=60))
    parsed = m3u8.loads(resumed.render())
    assert not parsed.is_endlist and parsed.media_sequence == 3 and parsed.discontinuity_sequence == 1
    assert [s.discontinuity for s in parsed.segments] == [False, False, False, True]


def test_low_latency_playlist_lists_parts_open_parts_and_hint_for_the_origin():
    from onair.agent.transcoder.playlists import PART_SEGMENTS_LISTED, Part

    playlist = MediaPlaylist(window=8, version=7)
    playlist.part_target = 0.2
    for n in range(6):
        parts = tuple(Part(f"r1_{5 * n + i:06d}.m4s", 0.2, i == 0) for i in range(5))
        playlist.add(f"seg_r1_{5 * n:06d}.m4s", 1.0, "r1", "r1_init.mp4", T0 + timedelta(seconds=n + 1), parts)
    playlist.open_parts = [Part("r1_000030.m4s", 0.2, True), Part("r1_000031.m4s", 0.2, False)]
    playlist.open_init = "r1_init.mp4"
    playlist.preload_hint = "r1_000032.m4s"
    parsed = parse_media_playlist(playlist.render())
    assert parsed.part_target == 0.2
    assert [len(s.parts) for s in parsed.segments] == [0] * (6 - PART_SEGMENTS_LISTED) + [5] * PART_SEGMENTS_LISTED
    assert [p.independent for p in parsed.segments[-1].parts] == [True, False, False, False, False]
    assert [p.uri for p in parsed.open_parts] == ["r1_000030.m4s", "r1_000031.m4s"]
    assert parsed.preload_hint == "r1_000032.m4s" and parsed.open_map_uri == "r1_init.mp4"
    # A new run's first parts come under its own EXT-X-MAP, before its first segment exists.
    playlist.open_init = "r2_init.mp4"
    assert parse_media_playlist(playlist.render()).open_map_uri == "r2_init.mp4"
    # Ended: no parts to wait for.
    playlist.end()
    text = playlist.render()
    assert "#EXT-X-PRELOAD-HINT" not in text and "r1_000030" not in text and text.endswith("#EXT-X-ENDLIST\n")


def test_target_duration_bounds_each_duration_rounded_to_the_nearest_second():
    # RFC 8216 4.3.3.1: EXTINF rounded to the nearest integer <= EXT-X-TARGETDURATION.
    assert [target_duration_for(d) for d in (2.0, 2.002, 2.033, 2.49, 2.5, 1.001, 0.968, 0.2)] == [
        2,
        2,
        2,
        2,
        3,
        1,
        1,
        1,
    ]


def test_ntsc_segments_keep_the_target_duration_of_their_nominal_length():
    # 29.97 fps: 60 frames are 2.002 s; rounding up would announce 3 and hls.js would start 3 s further back.
    playlist = MediaPlaylist(window=6, version=7)
    _fill(playlist, "r1", 4, T0, step=2.002)
    assert playlist.target_duration == 2 and m3u8.loads(playlist.render()).target_duration == 2


def test_target_duration_is_set_before_the_first_segment_and_only_ever_grows():
    playlist = MediaPlaylist(window=6, version=7)
    playlist.plan_segments(2)
    # A run's first segment may be short: the target published with it is already the one that lasts.
    playlist.add("r1_0.m4s", 1.2, "r1", "init.mp4", T0)
    assert m3u8.loads(playlist.render()).target_duration == 2
    _fill(playlist, "r1", 2, T0)
    assert playlist.target_duration == 2
    # A segment the encoder cut late must still fit (the RFC's MUST), and the target never comes back down.
    playlist.add("r1_9.m4s", 2.6, "r1", "r1_init.mp4", T0 + timedelta(seconds=9))
    _fill(playlist, "r1", 2, T0 + timedelta(seconds=10))
    assert playlist.target_duration == 3 and m3u8.loads(playlist.render()).target_duration == 3


def test_resume_keeps_the_target_duration_players_were_told():
    before = MediaPlaylist(window=6, version=7)
    _fill(before, "r1", 2, T0)
    before.add("r1_long.m4s", 3.4, "r1", "r1_init.mp4", T0 + timedelta(seconds=8))
    _fill(before, "r1", 5, T0 + timedelta(seconds=9))  # the long one slid out of the window
    assert before.target_duration == 3
    resumed = MediaPlaylist.resume(before.render(), window=6, version=7)
    assert resumed.target_duration == 3
