"""The origin's path guard: nothing a client or the transcoder sends may leave data_dir."""

import pytest

from onair.agent.origin.paths import BadPath, is_publishable, kind_of, relative_uri, resolve_uri, safe_relpath


@pytest.mark.parametrize(
    "path",
    [
        "hls/cmaf/720p/seg_1.m4s",
        "screenshot.jpg",
        "dash/manifest.mpd",
        "hls/ts/360p/init~2.mp4",
    ],
)
def test_ordinary_paths_pass_unchanged(path):
    assert safe_relpath(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "../etc/passwd",
        "hls/../../etc/passwd",
        "hls/./x.ts",
        "hls//x.ts",
        "hls/x.ts/",
        "hls/\x00.ts",
        "hls\\..\\x.ts",
        ".dvr/state.json",
        "hls/.tmp/x",
        "hls/\nx.ts",
        "a/" * 20 + "x.ts",
        "x" * 600,
    ],
)
def test_escapes_and_hidden_paths_are_refused(path):
    with pytest.raises(BadPath):
        safe_relpath(path)


def test_only_the_transcoder_output_tree_can_be_published():
    assert is_publishable("hls/cmaf/master.m3u8")
    assert is_publishable("dash/chunk-stream0-00001.m4s")
    assert is_publishable("screenshot.jpg")
    assert not is_publishable("player")
    assert not is_publishable("hls/cmaf/run.sh")
    assert not is_publishable("other/x.ts")
    assert not is_publishable("hls.m3u8")


def test_content_types():
    assert kind_of("a/b.m3u8").content_type == "application/vnd.apple.mpegurl"
    assert kind_of("a/b.mpd").content_type == "application/dash+xml"
    assert kind_of("a/b.m4s").content_type == "video/iso.segment"
    assert kind_of("a/b.ts").content_type == "video/mp2t"
    assert kind_of("a/b.mp4").content_type == "video/mp4"
    assert kind_of("screenshot.jpg").content_type == "image/jpeg"
    assert kind_of("a/b.M3U8").playlist
    assert kind_of("a/b.exe") is None


def test_playlist_uris_resolve_inside_the_tree_only():
    assert resolve_uri("hls/cmaf/720p/index.m3u8", "seg.m4s") == "hls/cmaf/720p/seg.m4s"
    assert resolve_uri("hls/cmaf/720p/index.m3u8", "../shared/init.mp4") == "hls/cmaf/shared/init.mp4"
    for uri in ("../../../x.ts", "/abs.ts", "http://h/x.ts", "x.ts?a=1", ""):
        with pytest.raises(BadPath):
            resolve_uri("hls/cmaf/720p/index.m3u8", uri)


def test_relative_uri():
    assert relative_uri("hls/cmaf/720p/index.m3u8", "hls/cmaf/720p/seg.m4s") == "seg.m4s"
    assert relative_uri("hls/cmaf/720p/index.m3u8", "hls/cmaf/init.mp4") == "../init.mp4"


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://vod.example.org/rec/a_part0001.m3u8", True),
        ("http://127.0.0.1:9000/public-vod/a.m3u8?token=x", True),
        ("javascript:alert(1)", False),
        ("data:application/vnd.apple.mpegurl,#EXTM3U", False),
        ("file:///etc/passwd", False),
        ("//cdn.example.org/a.m3u8", False),
        ("a.m3u8", False),
        ("https://" + "a" * 5000, False),
    ],
)
def test_the_player_plays_only_absolute_http_urls(url, ok):
    from onair.agent.origin.server import vod_source_ok

    assert vod_source_ok(url) is ok


@pytest.mark.parametrize(
    "name, ok",
    [
        ("events_keynote_20260714T090005Z_part0001.m3u8", True),
        ("events_keynote_20260714T090005Z_part0012.mp4", True),
        ("events_keynote_20260714T090005Z.json", False),
        ("events_keynote_20260714T090005Z_part0001.mp4.upload", False),
        ("..", False),
        ("index.m3u8", False),
    ],
)
def test_only_recording_parts_are_passed_on_to_the_recorder(name, ok):
    from onair.agent.origin.server import RECORDING_FILE

    assert bool(RECORDING_FILE.match(name)) is ok
