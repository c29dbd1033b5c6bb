"""Parsing what ffmpeg's hls muxer uploads, and carrying a token through a playlist."""

from datetime import datetime, timezone

import m3u8
import pytest

from onair.agent.hls import PlaylistError, add_query, format_pdt, is_master, parse_media_playlist

# Verbatim from ffmpeg 5.1 (-hls_flags program_date_time+independent_segments, fMP4, PUT)
FFMPEG_MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:4
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init_r1_hi.mp4"
#EXTINF:1.000000,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:55:37.837+0000
seg_r1_00004.m4s
#EXTINF:1.000000,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:55:38.837+0000
seg_r1_00005.m4s
#EXT-X-ENDLIST
"""
FFMPEG_MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-STREAM-INF:BANDWIDTH=70400,RESOLUTION=320x180,CODECS="avc1.42c00c,mp4a.40.2"
hi/index.m3u8

#EXT-X-STREAM-INF:BANDWIDTH=70400,RESOLUTION=160x90,CODECS="avc1.42c00b,mp4a.40.2"
lo/index.m3u8
"""


def test_parses_ffmpeg_media_playlist():
    pl = parse_media_playlist(FFMPEG_MEDIA)
    assert pl.target_duration == 1 and pl.media_sequence == 4 and pl.version == 7
    assert pl.endlist and pl.independent_segments
    assert [(s.uri, s.sequence, s.map_uri) for s in pl.segments] == [
        ("seg_r1_00004.m4s", 4, "init_r1_hi.mp4"),
        ("seg_r1_00005.m4s", 5, "init_r1_hi.mp4"),
    ]
    assert pl.segments[0].program_date_time == datetime(2026, 11, 21, 10, 55, 37, 837000, tzinfo=timezone.utc)


def test_discontinuity_and_map_changes_are_per_segment():
    text = "\n".join(
        [
            "#EXTM3U",
            "#EXT-X-TARGETDURATION:2",
            '#EXT-X-MAP:URI="a.mp4"',
            "#EXTINF:2,",
            "1.m4s",
            "#EXT-X-DISCONTINUITY",
            '#EXT-X-MAP:URI="b.mp4"',
            "#EXTINF:2,",
            "2.m4s",
            "#EXTINF:2,",
            "3.m4s",
        ]
    )
    segs = parse_media_playlist(text).segments
    assert [(s.discontinuity, s.map_uri) for s in segs] == [(False, "a.mp4"), (True, "b.mp4"), (False, "b.mp4")]


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "EXTM3U"),
        ("garbage\x00\xff", "EXTM3U"),
        (FFMPEG_MASTER, "master"),
        ("#EXTM3U\n#EXTINF:1,\nx.ts\n", "TARGETDURATION"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:1\nx.ts\n", "EXTINF"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:abc\n", "TARGETDURATION"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:-5,\nx.ts\n", "duration"),
    ],
)
def test_bad_playlists_are_refused_with_a_reason(text, why):
    with pytest.raises(PlaylistError, match=why):
        parse_media_playlist(text)


def test_master_detection():
    assert is_master(FFMPEG_MASTER) and not is_master(FFMPEG_MEDIA)


def test_query_is_added_to_every_uri_of_a_master():
    text = FFMPEG_MASTER + '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="audio/index.m3u8"\n'
    out = add_query(text, "token=t.o.k")
    pl = m3u8.loads(out)
    assert [p.uri for p in pl.playlists] == ["hi/index.m3u8?token=t.o.k", "lo/index.m3u8?token=t.o.k"]
    assert pl.media[0].uri == "audio/index.m3u8?token=t.o.k"
    assert add_query(text, "") == text


def test_pdt_is_written_in_utc_with_milliseconds():
    assert format_pdt(datetime(2024, 1, 2, 3, 4, 5, 678900, tzinfo=timezone.utc)) == "2024-01-02T03:04:05.678Z"
