"""WHEP in headless Chromium: the origin's /player?format=whep (the browser's own RTCPeerConnection)
playing the chain ingest -> transcoder (WebRTC rendition) -> origin (access, signalling proxy)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fixtures.browser import browser  # noqa: F401  (fixture)
from tests.fixtures.media import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(240)]

STATS = """(async () => {
  const stats = await onairPlayer.whep.pc.getStats();
  let out = null;
  stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') out = {
      decoded: s.framesDecoded, width: s.frameWidth, height: s.frameHeight, codec: s.codecId,
      jitterBuffer: s.jitterBufferEmittedCount ? s.jitterBufferDelay / s.jitterBufferEmittedCount : null}; });
  const audio = [];
  stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'audio') audio.push(s.packetsReceived); });
  const codecs = [];
  stats.forEach(s => { if (s.type === 'codec') codecs.push(s.mimeType); });
  return Object.assign(out || {}, {audio: audio[0] || 0, codecs});
})()"""


def whep_viewers(tx) -> float:
    metrics = tx.request("GET", "/metrics")[1].decode()
    line = next(x for x in metrics.splitlines() if x.startswith("onair_transcoder_whep_viewers{"))
    return float(line.rsplit(" ", 1)[1])


@pytest.fixture
def whep_chain(ingest_agent, transcoder_agent, origins, publishers):
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    tx = transcoder_agent.start(
        main_url=ingest.read_url,
        tracks=["360p"],
        source_size=(640, 360),
        whep=True,
        whep_ice_addresses=["127.0.0.1"],
        hls_mpegts=False,
        dash=False,
    )
    origin = origins.start(phase="backstage", whep_url=f"{tx.url}/whep", agent_token_file=tx.config.agent_token_file)
    publishers.rtmp(ingest.rtmp_url, width=640, height=360, fps=30)
    ingest.wait_receiving()
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="backstage", broadcasting=True)
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    return origin, tx


async def test_chromium_plays_whep_decodes_frames_and_ends_the_session(whep_chain, browser):
    origin, tx = whep_chain
    # Backstage without a token: the page and the endpoint refuse with the reason (as for HLS), no session.
    assert origin.get("player?format=whep").status_code == 403
    refused = httpx.post(
        origin.url("whep"),
        content=b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n",
        headers={"Content-Type": "application/sdp"},
    )
    assert refused.status_code == 403 and "playback token is required" in refused.json()["error"]
    assert whep_viewers(tx) == 0

    page = await browser.new_page(origin.url(f"player?format=whep&token={origin.token()}"))
    assert await page.evaluate("onairPlayer.engine") == "whep"
    # It asked for the ICE servers first (OPTIONS): none are configured here.
    await page.wait_for("Array.isArray(onairPlayer.whep.iceServers)", timeout=10, what="the ICE servers")
    assert await page.evaluate("onairPlayer.whep.iceServers") == []
    await page.wait_for(
        "onairPlayer.whep.pc && onairPlayer.whep.pc.connectionState === 'connected'",
        timeout=30,
        what="the WebRTC connection",
    )
    await page.wait_for("document.getElementById('video').currentTime > 1", timeout=30, what="playback")
    first = await page.evaluate(STATS)
    t0 = await page.evaluate("document.getElementById('video').currentTime")
    await asyncio.sleep(4)
    second = await page.evaluate(STATS)
    t1 = await page.evaluate("document.getElementById('video').currentTime")
    assert (second["width"], second["height"]) == (640, 360)
    assert "video/H264" in second["codecs"] and "audio/opus" in second["codecs"]
    # Frames really decode and keep coming: ~30 a second.
    assert second["decoded"] - first["decoded"] > 60, (first, second)
    assert t1 - t0 > 3, (t0, t1)
    assert second["audio"] > first["audio"]
    assert whep_viewers(tx) == 1
    assert await page.evaluate("onairPlayer.errors.filter(e => !e.code)") == []
    # Leaving the page sends DELETE on the session's Location: the transcoder drops it at once.
    await page.evaluate("onairPlayer.whep.stop()")
    wait_for(lambda: whep_viewers(tx) == 0, 10, what="the session to end on DELETE")
    assert page.exceptions == []
    await page.close()


async def test_the_player_says_why_when_its_access_ends(whep_chain, browser):
    """The origin ends a session its access rules now refuse (here the member's token expires before the
    stream opens): the page notices the session is gone and shows the origin's reason."""
    origin, tx = whep_chain
    page = await browser.new_page(origin.url(f"player?format=whep&token={origin.token(ttl=15)}"))
    await page.wait_for("document.getElementById('video').currentTime > 1", timeout=30, what="playback")
    await page.wait_for(
        "!document.getElementById('message').hidden && /expired/.test(document.getElementById('message').textContent)",
        timeout=40,
        what="the reason on the page",
    )
    assert whep_viewers(tx) == 0
    assert page.exceptions == []
    await page.close()
