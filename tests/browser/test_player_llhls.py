"""The low-latency tier in headless Chromium: the origin's /player page (stock hls.js, lowLatencyMode)
playing the real chain ingest -> transcoder (lowLatency) -> origin, with parts and blocking reloads."""

from __future__ import annotations

import asyncio

import pytest

from onair.agent.origin.server import HLS_JS
from tests.fixtures.browser import browser  # noqa: F401  (fixture)
from tests.media.test_transcoder_llhls import ll_chain  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.media,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not HLS_JS.is_file(), reason="hls.js not built: run scripts/build-player"),
]

PLAYING = "window.onairPlayer && document.getElementById('video').currentTime > 0.5"
DETAILS = "onairPlayer.hls.levels[Math.max(onairPlayer.hls.currentLevel, 0)].details"


async def test_stock_hlsjs_plays_the_ll_tier_with_parts_and_blocking_reloads(ll_chain, browser):
    origin, _ = ll_chain
    page = await browser.new_page(origin.url("player"))
    assert await page.evaluate("onairPlayer.lowLatency") is True
    assert await page.evaluate("onairPlayer.hls.config.lowLatencyMode") is True
    assert await page.evaluate("onairPlayer.hls.config.maxLiveSyncPlaybackRate") == 1.5
    await page.wait_for(PLAYING, timeout=60, what="playback to start")
    # Requests hls.js made: blocking reloads and parts, not only whole playlists and segments.
    await page.evaluate("""(() => { window.llRequests = [];
        new PerformanceObserver(list => list.getEntries().forEach(e => window.llRequests.push(e.name)))
            .observe({type: 'resource', buffered: true}); })()""")
    start = await page.evaluate("document.getElementById('video').currentTime")
    await asyncio.sleep(8)
    end = await page.evaluate("document.getElementById('video').currentTime")
    assert end - start > 5.0, f"video stalled: currentTime {start:.2f} -> {end:.2f}; console {page.console[-10:]}"
    assert await page.evaluate(f"{DETAILS}.canBlockReload") is True
    assert await page.evaluate(f"{DETAILS}.partList.length") > 0
    requests = await page.evaluate("window.llRequests")
    blocking = [u for u in requests if "_HLS_msn=" in u]
    parts = [
        u
        for u in requests
        if "/hls/cmaf/" in u
        and u.split("?")[0].rsplit("/", 1)[1].count("_") == 1
        and not u.split("?")[0].rsplit("/", 1)[1].startswith(("seg_", "index"))
    ]
    assert blocking, f"no blocking reload among {requests[-20:]}"
    assert parts, f"no part fetched among {requests[-20:]}"
    latency = await page.evaluate("onairPlayer.hls.latency")
    target = await page.evaluate("onairPlayer.hls.targetLatency")
    print(
        f"\nhls.js lowLatencyMode: latency {latency:.2f} s (target {target:.2f} s), "
        f"{len(blocking)} blocking reloads, {len(parts)} parts in 8 s"
    )
    assert await page.evaluate("onairPlayer.fatal") is None
    assert await page.evaluate("onairPlayer.errors") == []
    assert page.exceptions == []
