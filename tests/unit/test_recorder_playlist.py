import pytest

from onair.agent.recorder.hls import choose_top_rung, media_playlist_state

MASTER_MUXED = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2"
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080,CODECS="avc1.640028,mp4a.40.2"
1080p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720
720p/index.m3u8
"""

MASTER_SEPARATE_AUDIO = """#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",DEFAULT=NO,URI="audio/en.m3u8"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="main",DEFAULT=YES,URI="audio/main.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,AUDIO="aud"
v360.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,AUDIO="aud"
v720.m3u8
"""


def test_highest_bandwidth_variant_wins_with_an_absolute_url():
    source = choose_top_rung(MASTER_MUXED, "http://origin:8081/hls/ts/master.m3u8")
    assert source.video_url == "http://origin:8081/hls/ts/1080p/index.m3u8"
    assert source.audio_url is None
    assert (source.bandwidth, source.resolution) == (5_000_000, "1920x1080")


def test_resolution_breaks_a_bandwidth_tie():
    text = (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=640x360\na.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=1280x720\nb.m3u8\n"
    )
    assert choose_top_rung(text, "http://o/m.m3u8").video_url == "http://o/b.m3u8"


def test_separate_audio_rendition_comes_along_preferring_the_default():
    source = choose_top_rung(MASTER_SEPARATE_AUDIO, "http://origin/hls/cmaf/master.m3u8")
    assert source.video_url == "http://origin/hls/cmaf/v720.m3u8"
    assert source.audio_url == "http://origin/hls/cmaf/audio/main.m3u8"


def test_a_media_playlist_is_recorded_as_it_is():
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg1.ts\n"
    assert choose_top_rung(text, "http://o/live.m3u8").video_url == "http://o/live.m3u8"


@pytest.mark.parametrize("text", ["<html>404</html>", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n"])
def test_garbage_is_an_error_not_a_guess(text):
    with pytest.raises(ValueError):
        choose_top_rung(text, "http://o/m.m3u8")


def test_media_playlist_state_sees_the_end_and_the_newest_segment():
    live = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2,\ns7.ts\n#EXTINF:2,\ns8.ts\n"
    assert media_playlist_state(live).ended is False
    assert media_playlist_state(live).last_segment == "s8.ts"
    assert media_playlist_state(live + "#EXT-X-ENDLIST\n").ended is True
    assert media_playlist_state("#EXTM3U\n#EXT-X-TARGETDURATION:2\n").last_segment is None
    with pytest.raises(ValueError):
        media_playlist_state("Not Found")
