"""A recorded part plays as HLS VOD in stock hls.js (the version the player page vendors), from the
playlist onair.agent.recorder.vod builds over the part's own boxes: no copy, no re-mux.

The part is recorded by the real recorder agent (real ffmpeg, the recorder's fragmented-MP4 flags)
from a real RTMP publisher; the part and its playlist are served side by side as static files,
which is how a bucket or a CDN serves them (byte ranges included).
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from onair.agent.recorder import vod
from tests.fixtures.browser import browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.media, pytest.mark.browser, pytest.mark.timeout(180)]

HLS_JS = Path(vod.__file__).resolve().parents[2] / "agent" / "static" / "vendor" / "hls.min.js"
PAGE = """<!doctype html><html><body><video id="video" muted autoplay playsinline></video>
<script src="hls.min.js"></script><script>
window.vodErrors = [];
const hls = new Hls({enableWorker: true});
hls.on(Hls.Events.ERROR, (_, data) => window.vodErrors.push({type: data.type, details: data.details, fatal: data.fatal}));
hls.loadSource(new URLSearchParams(location.search).get('src'));
hls.attachMedia(document.getElementById('video'));
window.vodHls = hls;
</script></body></html>"""


async def serve(directory: Path) -> tuple[web.AppRunner, str]:
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def hls_js(_: web.Request) -> web.FileResponse:
        return web.FileResponse(HLS_JS)

    app.router.add_get("/vod.html", page)
    app.router.add_get("/hls.min.js", hls_js)
    app.router.add_static("/media", directory)  # FileResponse: answers Range requests
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_a_recorded_part_plays_as_hls_vod_and_seeks(rtmp_source, recorder_agent, publishers, browser, tmp_path):
    if not HLS_JS.is_file():
        pytest.fail(f"{HLS_JS} is missing: run scripts/build-player")
    publisher = publishers.rtmp(rtmp_source.publish_url, width=320, height=180, fps=15)
    recorder = recorder_agent.start(rtmp_source.read_url)
    recorder.put_desired(recording=True)
    await asyncio.to_thread(recorder.wait_status, lambda s: s["durationSeconds"] >= 12, 60, "12 s recorded")
    recorder.put_desired(recording=False)
    done = await asyncio.to_thread(recorder.wait_status, lambda s: bool(s["recordings"]), 30, "the session finalized")
    publisher.stop()
    [part] = done["recordings"][-1]["parts"]
    path = recorder.output_dir / part["file"]

    with open(path, "rb") as handle:
        index = vod.index_fragmented_mp4(handle, path.stat().st_size)
    assert index.duration == pytest.approx(part["durationSeconds"], abs=0.6)
    assert len(index.segments) >= 3 and all(s.duration <= vod.TARGET_SECONDS + 2 for s in index.segments)
    (recorder.output_dir / vod.playlist_name(part["file"])).write_text(vod.hls_vod_playlist(index, part["file"]))

    runner, base = await serve(recorder.output_dir)
    try:
        page = await browser.new_page(f"{base}/vod.html?src={base}/media/{vod.playlist_name(part['file'])}")
        video = "document.getElementById('video')"
        await page.wait_for(f"{video}.currentTime > 1", timeout=30, what="playback to start")
        duration = await page.evaluate(f"{video}.duration")
        assert duration == pytest.approx(index.duration, abs=1.0), "a VOD: the whole length is known at once"
        assert await page.evaluate("vodHls.levels.length") == 1
        # Seek near the end: the byte range of a later segment is fetched and plays to the end.
        await page.evaluate(f"{video}.currentTime = {max(1.0, index.duration - 3):.2f}")
        await page.wait_for(f"{video}.ended || {video}.currentTime >= {index.duration - 1:.2f}", timeout=20,
                            what="playback after the seek reaching the end")
        assert await page.evaluate("vodErrors.filter(e => e.fatal)") == []
        assert page.exceptions == []
    finally:
        await runner.cleanup()
