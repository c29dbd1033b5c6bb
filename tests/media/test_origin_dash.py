"""Real ffmpeg DASH output PUT to the origin: MPD rewriting, UTCTiming, DVR retention of segments."""

from __future__ import annotations

import re

import pytest
from mpegdash.parser import MPEGDASHParser

from tests.fixtures.media import ffprobe_json, wait_for
from tests.fixtures.origin import origins, transcoders  # noqa: F401  (fixtures)

pytestmark = pytest.mark.media

MPD = "dash/manifest.mpd"


def live_mpd(origin, **kwargs):
    response = origin.get(MPD, **kwargs)
    if response.status_code != 200 or 'type="dynamic"' not in response.text:
        return None
    return response


def test_dash_is_served_with_origin_time_and_dvr_depth(origins, transcoders, tmp_path):
    origin = origins.start(phase="live", dvr_window_seconds=120)
    transcoders.start(origin, dash=True, window_size=3)
    wait_for(
        lambda: (
            (r := live_mpd(origin))
            and r.text.count("<S ") >= 1
            and len(list((origin.data_dir / "dash").glob("chunk-stream0-*.m4s"))) >= 6
        ),
        timeout=40,
        what="a live MPD and 6 video segments",
    )
    response = live_mpd(origin)
    assert response.headers["content-type"].startswith("application/dash+xml")
    assert response.headers["cache-control"] == "no-cache"
    mpd = MPEGDASHParser.parse(response.text)
    assert [(t.scheme_id_uri, t.value) for t in mpd.utc_timings] == [
        ("urn:mpeg:dash:utc:http-iso:2014", f"//127.0.0.1:{origin.config.http_port}/time")
    ]
    assert mpd.time_shift_buffer_depth == "PT120.0S"
    clock = origin.get("time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", clock.text)

    template = mpd.periods[0].adaptation_sets[0].representations[0].segment_templates[0]
    first_number = template.start_number
    init = origin.get(f"dash/{template.initialization.replace('$RepresentationID$', '0')}")
    name = re.sub(r"\$Number%05d\$", f"{first_number:05d}", template.media).replace("$RepresentationID$", "0")
    segment = origin.get(f"dash/{name}")
    assert init.status_code == segment.status_code == 200
    assert segment.headers["content-type"] == "video/iso.segment"
    (tmp_path / "seg.mp4").write_bytes(init.content + segment.content)
    probe = ffprobe_json(str(tmp_path / "seg.mp4"))
    assert probe["streams"][0]["codec_name"] == "h264"
    # ffmpeg (window of 3) DELETEd chunk 1 long ago: the origin keeps it for the DVR window
    assert first_number > 1
    assert origin.get("dash/chunk-stream0-00001.m4s").status_code == 200
    assert MPD in origin.status()["playlists"]


def test_dash_token_reaches_segment_urls_in_backstage(origins, transcoders):
    origin = origins.start()
    transcoders.start(origin, dash=True)
    token = origin.token()
    wait_for(lambda: live_mpd(origin, params={"token": token}), timeout=30, what="a live MPD")
    assert origin.get(MPD).status_code == 403
    mpd = MPEGDASHParser.parse(live_mpd(origin, params={"token": token}).text)
    template = mpd.periods[0].adaptation_sets[0].representations[0].segment_templates[0]
    assert template.media.endswith(f"?token={token}") and template.initialization.endswith(f"?token={token}")
    init = template.initialization.replace("$RepresentationID$", "0")
    assert origin.get(f"dash/{init}").status_code == 200
    assert origin.get(f"dash/{init.split('?')[0]}").status_code == 403


@pytest.mark.slow
def test_dash_clear_keeps_the_init_segments_the_mpd_needs(origins, transcoders, tmp_path):
    origin = origins.start(phase="live", dvr_window_seconds=120)
    transcoders.start(origin, dash=True, window_size=3)
    dash = origin.data_dir / "dash"
    wait_for(lambda: live_mpd(origin) and (dash / "init-stream0.m4s").is_file(), timeout=30, what="a live MPD")
    # old enough for the clear to take everything but the transcoder's current window
    wait_for(lambda: len(list(dash.glob("chunk-stream0-*.m4s"))) >= 22, timeout=60, what="22 s of DASH segments")
    result = origin.clear_dvr()
    assert result["deletedFiles"] > 0
    assert not (dash / "chunk-stream0-00001.m4s").exists()
    assert (dash / "init-stream0.m4s").is_file() and (dash / "init-stream1.m4s").is_file()
    mpd = MPEGDASHParser.parse(live_mpd(origin).text)
    template = mpd.periods[0].adaptation_sets[0].representations[0].segment_templates[0]
    name = re.sub(r"\$Number%05d\$", f"{template.start_number:05d}", template.media).replace("$RepresentationID$", "0")
    init, segment = origin.get("dash/init-stream0.m4s"), origin.get(f"dash/{name}")
    assert init.status_code == segment.status_code == 200
    (tmp_path / "after-clear.mp4").write_bytes(init.content + segment.content)
    assert ffprobe_json(str(tmp_path / "after-clear.mp4"))["streams"][0]["codec_name"] == "h264"
