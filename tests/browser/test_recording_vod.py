"""A recorded part plays as HLS VOD in stock hls.js (the version the player page vendors), from the
playlist onair.agent.recorder.vod builds over the part's own boxes: no copy, no re-mux.

The part is recorded by the real recorder agent (real ffmpeg, the recorder's fragmented-MP4 flags)
from a real RTMP publisher; the part and its playlist are served side by side as static files,
which is how a bucket or a CDN serves them (byte ranges included).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web

from onair.agent.recorder import vod
from onair.api.agent import Recording as FinishedSession
from onair.api.agent import S3UploadConfig
from onair.render.recordings import recording_spec, recording_status
from tests.fixtures.browser import browser  # noqa: F401  (fixture)
from tests.fixtures.origin import origins  # noqa: F401  (fixture)
from tests.fixtures.s3 import PUBLIC_BUCKET, write_credentials

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
        await page.wait_for(
            f"{video}.ended || {video}.currentTime >= {index.duration - 1:.2f}",
            timeout=20,
            what="playback after the seek reaching the end",
        )
        assert await page.evaluate("vodErrors.filter(e => e.fatal)") == []
        assert page.exceptions == []
    finally:
        await runner.cleanup()


def uploaded(status: dict) -> bool:
    upload = status.get("upload") or {}
    return (
        status["state"] == "idle"
        and bool(status["recordings"])
        and upload.get("pending") == 0
        and upload.get("uploading") is None
    )


async def test_an_uploaded_recording_plays_from_its_playback_urls_in_the_player_page(
    rtmp_source, recorder_agent, publishers, seaweedfs, origins, browser, tmp_path
):
    """The whole path a viewer takes: the recorder uploads each part and its playlist to a real S3
    store (SeaweedFS), the Recording's status.playback gives their HTTP URLs through the bucket's
    public address (publicBaseUrl), and the origin's player page plays them one after the other
    with ?src= (cross-origin: the store answers CORS and byte ranges)."""
    if not HLS_JS.is_file():
        pytest.fail(f"{HLS_JS} is missing: run scripts/build-player")
    seaweedfs.create_bucket(PUBLIC_BUCKET)
    creds = tmp_path / "s3-secret"
    write_credentials(creds)
    publisher = publishers.rtmp(rtmp_source.publish_url, width=320, height=180, fps=15)
    recorder = recorder_agent.start(
        rtmp_source.read_url,
        split_seconds=4,
        livestream="events/keynote",
        s3=S3UploadConfig(
            endpoint=seaweedfs.endpoint,
            bucket=PUBLIC_BUCKET,
            prefix="vod",
            force_path_style=True,
            access_key_id_file=str(creds / "accessKeyId"),
            secret_access_key_file=str(creds / "secretAccessKey"),
            request_timeout_seconds=5,
            retry_max_seconds=2,
        ),
    )
    recorder.put_desired(recording=True)
    await asyncio.to_thread(recorder.wait_status, lambda s: s["durationSeconds"] >= 6, 60, "6 s recorded")
    recorder.put_desired(recording=False)
    done = await asyncio.to_thread(recorder.wait_status, uploaded, 60, "every part uploaded")
    publisher.stop()
    session = FinishedSession.model_validate(done["recordings"][-1])
    assert len(session.parts) >= 2, session.parts

    location = {
        "endpoint": seaweedfs.endpoint,
        "bucket": PUBLIC_BUCKET,
        "prefix": "vod",
        "forcePathStyle": True,
        "credentialsSecret": "s3",
        "publicBaseUrl": f"{seaweedfs.endpoint}/{PUBLIC_BUCKET}",
    }
    spec = recording_spec("keynote", None, session, "keynote-recordings", location)
    playback = recording_status(spec)["playback"]
    urls = [part["url"] for part in playback["parts"]]
    assert "url" not in playback and len(urls) == len(session.parts)
    assert all(url.startswith(f"{seaweedfs.endpoint}/{PUBLIC_BUCKET}/vod/events/keynote/") for url in urls)
    without = recording_status(recording_spec("keynote", None, session, "c", {**location, "publicBaseUrl": None}))
    assert without["playback"]["reason"] == "NoPublicBaseUrl"

    origin = origins.start(phase="ended")
    query = "&".join(f"src={quote(url, safe='')}" for url in urls)
    page = await browser.new_page(f"{origin.url('player')}?{query}")
    assert await page.evaluate("onairPlayer.vod && !onairPlayer.lowLatency") is True
    video = "document.getElementById('video')"
    await page.wait_for(f"{video}.currentTime > 1", timeout=30, what="the first part playing")
    first = session.parts[0].duration_seconds or 0
    assert await page.evaluate(f"{video}.duration") == pytest.approx(first, abs=1.0), "a VOD: its length known at once"
    # Near the end of the first part: the player goes on with the next part, to the end of the last.
    await page.evaluate(f"{video}.currentTime = {max(0.5, first - 1.5):.2f}")
    last = len(urls) - 1
    await page.wait_for(
        f"onairPlayer.current === {last} && {video}.currentTime > 0.5",
        timeout=60,
        what="the player reaching the last part",
    )
    assert await page.evaluate("onairPlayer.source") == urls[-1]
    assert await page.evaluate("onairPlayer.errors.filter(e => e.fatal)") == []
    assert page.exceptions == []

    # Only http(s) URLs are played; anything else is refused with what to pass instead.
    refused = await asyncio.to_thread(origin.get, "player", params={"src": "javascript:alert(1)"})
    assert refused.status_code == 400 and "status.playback" in refused.text


async def test_recordings_on_the_volume_play_through_the_origin_under_the_live_access_rules(
    rtmp_source, recorder_agent, publishers, origins, browser
):
    """No object storage: the recorder serves the finished parts on its volume (GET /vod/<file>,
    agent token) and the origin passes them on to viewers at /recordings/<file>, a token required
    while the stream is closed to viewers (backstage) as for live playback, open once it ended."""
    import httpx

    if not HLS_JS.is_file():
        pytest.fail(f"{HLS_JS} is missing: run scripts/build-player")
    publisher = publishers.rtmp(rtmp_source.publish_url, width=320, height=180, fps=15)
    recorder = recorder_agent.start(rtmp_source.read_url, split_seconds=3)
    recorder.put_desired(recording=True)
    await asyncio.to_thread(recorder.wait_status, lambda s: s["durationSeconds"] >= 5, 60, "5 s recorded")
    recorder.put_desired(recording=False)
    done = await asyncio.to_thread(recorder.wait_status, lambda s: bool(s["recordings"]), 30, "the session finalized")
    publisher.stop()
    parts = [p["file"] for p in done["recordings"][-1]["parts"]]
    assert len(parts) >= 2, parts
    playlists = [vod.playlist_name(p) for p in parts]
    # Only the origin (which holds the Livestream's agent token) reads the volume.
    assert httpx.get(f"{recorder.agent_url}/vod/{playlists[0]}", timeout=10).status_code == 401

    origin = origins.start(
        phase="backstage", recorder_url=recorder.agent_url, agent_token_file=recorder.config.agent_token_file
    )
    refused = await asyncio.to_thread(origin.get, f"recordings/{playlists[0]}")
    assert refused.status_code == 403 and "playback token" in refused.json()["error"]
    token = origin.token(user_id="host")
    listing = await asyncio.to_thread(origin.get, f"recordings/{playlists[0]}", params={"token": token})
    assert listing.status_code == 200 and "#EXT-X-PLAYLIST-TYPE:VOD" in listing.text
    assert f'URI="{parts[0]}?token={token}"' in listing.text, "the token rides along to the part"
    head = await asyncio.to_thread(
        origin.get, f"recordings/{parts[0]}", params={"token": token}, headers={"Range": "bytes=0-99"}
    )
    assert head.status_code == 206 and len(head.content) == 100
    assert head.content == (recorder.output_dir / parts[0]).read_bytes()[:100]
    for name in (f"{done['recordings'][-1]['session']}.json", "../etc/passwd", "other_20260101T000000Z_part0001.mp4"):
        assert (await asyncio.to_thread(origin.get, f"recordings/{name}", params={"token": token})).status_code == 404

    # A member watches the whole recording in the player page while the stream is in backstage.
    query = "&".join(f"src={quote(origin.url(f'recordings/{p}') + '?token=' + token, safe='')}" for p in playlists)
    page = await browser.new_page(f"{origin.url('player')}?token={token}&{query}")
    video = "document.getElementById('video')"
    await page.wait_for(f"{video}.currentTime > 0.5", timeout=30, what="the first part playing")
    first = await page.evaluate(f"{video}.duration")
    await page.evaluate(f"{video}.currentTime = {max(0.2, first - 1):.2f}")
    await page.wait_for(
        f"onairPlayer.current === {len(playlists) - 1} && {video}.currentTime > 0.5",
        timeout=60,
        what="the player reaching the last part",
    )
    assert await page.evaluate("onairPlayer.errors.filter(e => e.fatal)") == []
    assert page.exceptions == []

    # Once the stream ended everyone may watch, as the live DVR.
    origin.set_phase("ended")
    assert (await asyncio.to_thread(origin.get, f"recordings/{playlists[-1]}")).status_code == 200
