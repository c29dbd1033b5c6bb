"""LL-DASH in headless Chromium: the origin's /player?format=dash page (stock dash.js in its low-latency
mode) playing the real chain ingest -> transcoder (lowLatency) -> origin, segments fetched while written."""

from __future__ import annotations

import asyncio

import pytest

from onair.agent.origin.dash import LowLatency
from onair.agent.origin.server import DASH_JS
from tests.fixtures.browser import browser  # noqa: F401  (fixture)
from tests.media.test_transcoder_lldash import lldash_chain  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.media,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not DASH_JS.is_file(), reason="dash.js not built: run scripts/build-player"),
]

PLAYING = "window.onairPlayer && document.getElementById('video').currentTime > 0.5"


async def test_stock_dashjs_plays_the_ll_tier_in_low_latency_mode(lldash_chain, browser):
    origin, _ = lldash_chain
    page = await browser.new_page(origin.url("player?format=dash"))
    assert await page.evaluate("onairPlayer.engine") == "dash"
    target = LowLatency.for_chunks(0.2).target_seconds
    settings = "onairPlayer.dash.getSettings().streaming"
    assert await page.evaluate(f"{settings}.delay.liveDelay") == pytest.approx(target)
    assert await page.evaluate(f"{settings}.liveCatchup.enabled") is True
    await page.wait_for(PLAYING, timeout=60, what="playback to start")
    # dash.js took the MPD for what it is: chunks of segments still being written.
    assert await page.evaluate("onairPlayer.dash.getLowLatencyModeEnabled()") is True
    start = await page.evaluate("document.getElementById('video').currentTime")
    await asyncio.sleep(8)
    end = await page.evaluate("document.getElementById('video').currentTime")
    assert end - start > 5.0, f"video stalled: currentTime {start:.2f} -> {end:.2f}; console {page.console[-10:]}"
    latency = await page.evaluate("onairPlayer.dash.getCurrentLiveLatency()")
    buffered = await page.evaluate("onairPlayer.dash.getDashMetrics().getCurrentBufferLevel('video')")
    rate = await page.evaluate("document.getElementById('video').playbackRate")
    print(
        f"\ndash.js low-latency mode: live latency {latency:.2f} s (target {target:.2f} s), "
        f"{buffered:.2f} s buffered, playing at {rate:.3f}x"
    )
    assert await page.evaluate("onairPlayer.errors") == []
    assert page.exceptions == []
