"""The origin's /player page in headless Chromium, playing a live stream flowing through the origin.

Real chain: ffmpeg (transcoder stand-in) -> PUT -> origin (DVR playlists) -> hls.js in Chromium.
"""

from __future__ import annotations

import asyncio

import m3u8
import pytest

from onair.agent.origin.server import HLS_JS
from tests.fixtures.browser import browser  # noqa: F401  (fixture)
from tests.fixtures.media import wait_for
from tests.fixtures.origin import LadderRung, origins, transcoders  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.media,
    pytest.mark.skipif(not HLS_JS.is_file(), reason="hls.js not built: run scripts/build-player"),
]

LADDER = (LadderRung("360p", 640, 360, 500), LadderRung("180p", 320, 180, 150))
PLAYING = "window.onairPlayer && document.getElementById('video').currentTime > 0.5"
LATENCY = "(Date.now() - onairPlayer.hls.playingDate.getTime()) / 1000"


def stream_ready(origin, token=None):
    def check():
        response = origin.get("hls/cmaf/360p/index.m3u8", params={"token": token} if token else None)
        return response.status_code == 200 and len(m3u8.loads(response.text).segments) >= 3

    return check


async def assert_plays(page, seconds: float = 5.0) -> float:
    """currentTime keeps moving; returns how far it moved over ``seconds``."""
    await page.wait_for(PLAYING, timeout=40, what="playback to start")
    start = await page.evaluate("document.getElementById('video').currentTime")
    await asyncio.sleep(seconds)
    end = await page.evaluate("document.getElementById('video').currentTime")
    assert end - start > 1.0, f"video stalled: currentTime {start:.2f} -> {end:.2f}; console {page.console[-10:]}"
    return end - start


async def test_player_plays_live_without_hls_errors_and_reports_latency(origins, transcoders, browser):
    origin = origins.start(phase="live", projection="vr180")
    transcoders.start(origin, ladder=LADDER, segment_seconds=1)
    await asyncio.to_thread(wait_for, stream_ready(origin), 40, 0.3, "3 segments")

    page = await browser.new_page(origin.url("player"))
    assert await page.evaluate("onairPlayer.projection") == "vr180"
    assert await page.evaluate("document.getElementById('projection').textContent") == "180°"
    await assert_plays(page)
    latency = await page.evaluate(LATENCY)
    errors = await page.evaluate("onairPlayer.errors")
    fatal = await page.evaluate("onairPlayer.fatal")
    levels = await page.evaluate("onairPlayer.hls.levels.map(l => l.height)")
    print(f"\nhls.js live latency with 1 s segments: {latency:.2f} s (levels {levels})")
    assert fatal is None
    assert errors == [], errors
    assert sorted(levels) == [180, 360]
    assert latency > 0  # playing behind the wall clock of the encoder, never ahead
    assert page.exceptions == []


async def test_backstage_player_needs_a_token(origins, transcoders, browser):
    origin = origins.start()  # backstage
    transcoders.start(origin, ladder=LADDER, segment_seconds=1)
    token = origin.token(user_id="host")
    await asyncio.to_thread(wait_for, stream_ready(origin, token), 40, 0.3, "3 segments")

    refused = await browser.new_page(origin.url("player"))
    text = await refused.evaluate("document.body.innerText")
    assert "token is required" in text
    assert await refused.evaluate("document.querySelector('video') === null")

    # A player page opened with a token gets through, and so does every request hls.js makes
    # from it (playlists, init, segments): the token rides along in the URIs.
    page = await browser.new_page(origin.url(f"player?token={token}"))
    await assert_plays(page)
    assert await page.evaluate("onairPlayer.errors") == []

    # Without the token the media itself is refused too, not just the page.
    status = await refused.evaluate("fetch('hls/cmaf/master.m3u8').then(r => r.status)")
    assert status == 403


async def test_player_rides_through_a_transcoder_restart(origins, transcoders, browser):
    """A restarted ffmpeg reuses every file name and overwrites its init: the origin turns that
    into a discontinuity with its own init, and hls.js keeps playing the new period."""
    origin = origins.start(phase="live")
    names = dict(segment_name="seg_%05d.m4s", init_name="init_%v.mp4", segment_seconds=1)
    first = transcoders.start(origin, ladder=LADDER, **names)
    await asyncio.to_thread(wait_for, stream_ready(origin), 40, 0.3, "3 segments")
    page = await browser.new_page(origin.url("player"))
    await assert_plays(page, seconds=2)

    first.stop()
    other = tuple(LadderRung(r.name, r.width, r.height, r.bitrate_kbps + 100) for r in LADDER)
    transcoders.start(origin, ladder=other, **names)

    def second_period():
        text = origin.get("hls/cmaf/360p/index.m3u8").text
        periods = text.split("\n#EXT-X-DISCONTINUITY\n")
        return len(periods) == 2 and periods[1].count("#EXTINF") >= 3

    await asyncio.to_thread(wait_for, second_period, 40, 0.3, "3 segments after the restart")
    # playing the second period: its program-date-time is later than anything of the first run
    boundary = m3u8.loads(origin.get("hls/cmaf/360p/index.m3u8").text)
    restart_date = next(s.program_date_time for s in boundary.segments if s.discontinuity).timestamp() * 1000
    await page.wait_for(
        f"onairPlayer.hls.playingDate && onairPlayer.hls.playingDate.getTime() > {restart_date}",
        timeout=40,
        what="playback past the discontinuity",
    )
    await assert_plays(page, seconds=3)
    assert await page.evaluate("onairPlayer.fatal") is None
    errors = await page.evaluate("onairPlayer.errors")
    # a stall at the live edge while the transcoder restarts is expected; decode errors are not
    assert [e for e in errors if e["type"] != "mediaError" or "Stall" not in e["details"]] == [], errors
