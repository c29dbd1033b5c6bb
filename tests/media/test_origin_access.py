"""Backstage: real uploads keep flowing, but only token holders can play until the stream goes live."""

from __future__ import annotations

import base64
import json
import subprocess
import time

import httpx
import m3u8
import pytest

from onair import tokens
from tests.fixtures.media import FFMPEG, wait_for
from tests.fixtures.origin import origins, transcoders  # noqa: F401  (fixtures)

pytestmark = pytest.mark.media

PLAYBACK = ["hls/cmaf/master.m3u8", "hls/cmaf/360p/index.m3u8", "player", "screenshot.jpg"]


@pytest.fixture
def backstage_origin(origins, transcoders):
    origin = origins.start()  # phase defaults to backstage
    transcoders.start(origin)
    auth = {"Authorization": f"Bearer {origin.token()}"}

    def ready():
        response = origin.get("hls/cmaf/360p/index.m3u8", headers=auth)
        return response.status_code == 200 and len(m3u8.loads(response.text).segments) >= 2

    wait_for(ready, timeout=30, what="segments uploaded in backstage")
    put_screenshot(origin)
    return origin


def test_backstage_refuses_playback_without_a_token(backstage_origin):
    origin = backstage_origin
    listed = m3u8.loads(origin.get("hls/cmaf/360p/index.m3u8", params={"token": origin.token()}).text)
    segment = listed.segments[0].uri.split("?")[0]
    for path in PLAYBACK + [f"hls/cmaf/360p/{segment}", "hls/cmaf/360p/init_r1_360p.mp4"]:
        response = origin.get(path)
        assert response.status_code == 403, path
        if path != "player":
            body = response.json()
            assert body["phase"] == "backstage" and "token is required" in body["error"], path
        else:
            assert "token is required" in response.text
    assert "refused playback" in origin.log_text()
    refused = [line for line in origin.metrics().splitlines() if line.startswith("onair_origin_playback_refused_total")]
    assert float(refused[0].split()[-1]) >= len(PLAYBACK) + 2


@pytest.mark.parametrize("bad", ["expired", "other-stream", "wrong-secret", "garbage"])
def test_backstage_refuses_bad_tokens_with_the_reason(backstage_origin, bad):
    origin = backstage_origin
    token = {
        "expired": origin.token(ttl=-5),
        "other-stream": origin.token(livestream="media/other"),
        "wrong-secret": origin.token(secret="not-the-secret-that-signs-this-livestream"),
        "garbage": "not.a.jwt",
    }[bad]
    response = origin.get("hls/cmaf/master.m3u8", params={"token": token})
    assert response.status_code == 403
    reason = {
        "expired": "expired",
        "other-stream": "another livestream",
        "wrong-secret": "signature",
        "garbage": "token",
    }[bad]
    assert reason in response.json()["error"]


def _signed(secret: str, payload: str) -> str:
    """A correctly signed token around raw JSON (NaN and Infinity: Python reads them, JSON has none)."""
    b64 = lambda raw: base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()  # noqa: E731
    head, body = b64('{"alg":"HS256","typ":"JWT"}'), b64(payload)
    return f"{head}.{body}.{tokens.signature(secret, f'{head}.{body}')}"


def test_tokens_with_impossible_times_are_refused_with_a_reason(origins):
    origin = origins.start()  # backstage, no transcoder needed: the token is checked first
    aud, now = json.dumps(origin.config.livestream), int(time.time())
    refused = {
        f'{{"aud":{aud},"exp":NaN}}': "exp is not a finite number",
        f'{{"aud":{aud},"exp":Infinity}}': "exp is not a finite number",
        f'{{"aud":{aud},"exp":{now + 60},"nbf":NaN}}': "nbf is not a finite number",
        f'{{"aud":{aud},"exp":{now + 60},"iat":-Infinity}}': "iat is not a finite number",
        f'{{"aud":{aud},"exp":1e308}}': "30-day maximum",
        f'{{"aud":{aud},"exp":{now + 31 * 86400}}}': "30-day maximum",
        "[" * 1500 + "]" * 1500: "malformed token payload",
    }
    for payload, reason in refused.items():
        for request in (
            {"params": {"token": _signed(origin.playback_secret, payload)}},
            {"headers": {"Authorization": f"Bearer {_signed(origin.playback_secret, payload)}"}},
        ):
            response = origin.get("hls/cmaf/master.m3u8", **request)
            assert response.status_code == 403, (payload[:60], response.status_code, response.text[:200])
            assert reason in response.json()["error"], payload[:60]
    ok = _signed(origin.playback_secret, f'{{"aud":{aud},"exp":{now + 29 * 86400}}}')
    assert origin.get("hls/cmaf/master.m3u8", params={"token": ok}).status_code == 404  # let in: nothing uploaded
    assert "Traceback" not in origin.log_text()


def test_a_token_in_the_query_opens_the_whole_chain(backstage_origin):
    origin = backstage_origin
    token = origin.token(user_id="producer-1")
    master = m3u8.loads(origin.get("hls/cmaf/master.m3u8", params={"token": token}).text)
    # players drop the master's query string when they follow its URIs: the token must be in them
    assert all(p.uri.endswith(f"?token={token}") for p in master.playlists)
    media_uri = master.playlists[0].uri
    media = origin.get(f"hls/cmaf/{media_uri}")
    assert media.status_code == 200
    assert media.headers["cache-control"] == "private, no-cache"
    pl = m3u8.loads(media.text)
    assert pl.segments[0].init_section.uri.endswith(f"?token={token}")
    rung = media_uri.split("/")[0]
    segment = origin.get(f"hls/cmaf/{rung}/{pl.segments[0].uri}")
    assert segment.status_code == 200 and len(segment.content) > 1000
    # bytes meant for token holders must not land in a shared cache
    assert segment.headers["cache-control"].startswith("private")
    assert origin.get(f"hls/cmaf/{rung}/{pl.segments[0].init_section.uri}").status_code == 200
    shot = origin.get("screenshot.jpg", params={"token": token})
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg"
    player = origin.get("player", params={"token": token})
    assert player.status_code == 200 and f"master.m3u8?token={token}" in player.text


def shared_cache_may_store(response: httpx.Response) -> bool:
    """RFC 9111: a shared cache (a CDN in front of the origin) must not store a response marked
    private or no-store; anything else it may keep and serve to whoever asks next."""
    directives = {d.strip().split("=")[0].lower() for d in response.headers.get("cache-control", "").split(",")}
    return not directives & {"private", "no-store"}


def test_nothing_served_before_the_stream_opens_may_land_in_a_shared_cache(backstage_origin):
    origin = backstage_origin
    token = origin.token()
    media = m3u8.loads(origin.get("hls/cmaf/360p/index.m3u8", params={"token": token}).text)
    segment = f"hls/cmaf/360p/{media.segments[0].uri.split('?')[0]}"
    init = f"hls/cmaf/360p/{media.segments[0].init_section.uri.split('?')[0]}"
    paths = PLAYBACK + [segment, init, "hls/cmaf/360p/seg_r1_99999.m4s"]  # the last one: a 404
    credentials = {
        "query token": {"params": {"token": token}},
        "bearer token": {"headers": {"Authorization": f"Bearer {token}"}},
        "read token": {"headers": {"Authorization": f"Bearer {origin.read_token}"}},
    }
    for how, request in credentials.items():
        for path in paths:
            if path == "player" and how == "read token":
                continue  # not a viewer's credential: refused, and refusals are no-store anyway
            response = origin.get(path, **request)
            assert response.status_code in (200, 404), (how, path, response.status_code)
            assert not shared_cache_may_store(response), (how, path, response.headers.get("cache-control"))
        headers = dict(request.get("headers", {}))
        for extra in ({"Range": "bytes=0-99"}, {"If-None-Match": origin.get(segment, **request).headers["etag"]}):
            response = httpx.get(
                origin.url(segment), params=request.get("params"), headers={**headers, **extra}, timeout=10
            )
            assert response.status_code in (206, 304), (how, extra, response.status_code)
            assert not shared_cache_may_store(response), (how, extra, response.headers.get("cache-control"))
        head = httpx.head(origin.url(segment), params=request.get("params"), headers=headers, timeout=10)
        assert head.status_code == 200 and not shared_cache_may_store(head), (how, head.headers)
    # Once viewers are allowed, a CDN may keep what is public (public segments are checked in
    # test_going_live_opens_playback_but_never_publishes_the_backstage_preview); the backstage
    # preview stays the members' and its refusal is not stored either.
    origin.put_desired(viewersAllowed=True)
    for path in ("hls/cmaf/master.m3u8", "player"):
        response = origin.get(path)
        assert response.status_code == 200 and shared_cache_may_store(response), path
    refused = origin.get(segment)
    assert refused.status_code == 403 and not shared_cache_may_store(refused)
    assert not shared_cache_may_store(origin.get(segment, params={"token": token}))
    origin.put_desired(viewersAllowed=False)
    assert not shared_cache_may_store(origin.get(segment, params={"token": token}))


def test_a_bearer_header_works_too_and_is_not_echoed(backstage_origin):
    origin = backstage_origin
    response = origin.get("hls/cmaf/master.m3u8", headers={"Authorization": f"Bearer {origin.token()}"})
    assert response.status_code == 200
    assert "token=" not in response.text


def test_the_read_token_lets_in_cluster_readers_read_backstage_without_opening_it(backstage_origin):
    origin = backstage_origin
    internal = {"Authorization": f"Bearer {origin.read_token}"}
    master = origin.get("hls/cmaf/master.m3u8", headers=internal)
    assert master.status_code == 200 and "token=" not in master.text
    uri = m3u8.loads(master.text).playlists[0].uri
    media = origin.get(f"hls/cmaf/{uri}", headers=internal)
    assert media.status_code == 200 and "token=" not in media.text
    pl = m3u8.loads(media.text)
    rung = uri.split("/")[0]
    for path in (pl.segments[0].uri, pl.segments[0].init_section.uri):
        response = origin.get(f"hls/cmaf/{rung}/{path}", headers=internal)
        assert response.status_code == 200 and len(response.content) > 500, path
        assert response.headers["cache-control"].startswith("private"), "backstage bytes stay out of shared caches"
    assert origin.get("screenshot.jpg", headers=internal).status_code == 200
    # It is a reader's credential, not a viewer's: no player page, not in the query, not a near miss.
    assert origin.get("player", headers=internal).status_code == 403
    assert origin.get("hls/cmaf/master.m3u8", params={"token": origin.read_token}).status_code == 403
    assert (
        origin.get("hls/cmaf/master.m3u8", headers={"Authorization": f"Bearer {origin.read_token}x"}).status_code == 403
    )
    assert origin.get("hls/cmaf/master.m3u8").status_code == 403, "anonymous backstage playback stays refused"
    assert origin.read_token not in origin.log_text()


def test_without_a_read_token_file_no_reader_gets_in_backstage(origins, transcoders):
    origin = origins.start(read_token=None)
    transcoders.start(origin)
    auth = {"Authorization": f"Bearer {origin.token()}"}
    wait_for(lambda: origin.get("hls/cmaf/master.m3u8", headers=auth).status_code == 200, 30, what="a master playlist")
    # The token a configured origin would have expected opens nothing here.
    assert (
        origin.get("hls/cmaf/master.m3u8", headers={"Authorization": "Bearer read-token-0123456789"}).status_code == 403
    )


def put_screenshot(origin) -> None:
    """The transcoder's screenshot, as it would PUT it."""
    jpg = origin.data_dir.parent / "shot.jpg"
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180", "-frames:v", "1", "-y", str(jpg)],
        check=True,
        timeout=30,
    )
    httpx.put(
        f"{origin.upload_url}/screenshot.jpg",
        content=jpg.read_bytes(),
        headers={"Authorization": f"Bearer {origin.upload_token}"},
        timeout=10,
    ).raise_for_status()


def test_going_live_opens_playback_but_never_publishes_the_backstage_preview(backstage_origin):
    """GetStream's public HLS starts at go-live: what hosts previewed in backstage stays theirs,
    in the live DVR and in the ended one; members keep the whole window."""
    origin = backstage_origin
    member = {"token": origin.token(user_id="host")}
    preview = [
        s.uri.split("?")[0] for s in m3u8.loads(origin.get("hls/cmaf/360p/index.m3u8", params=member).text).segments
    ]
    origin.set_phase("live")
    for path in ("hls/cmaf/master.m3u8", "player"):
        assert origin.get(path).status_code == 200, path

    def public_segments():
        response = origin.get("hls/cmaf/360p/index.m3u8")
        return m3u8.loads(response.text) if response.status_code == 200 and m3u8.loads(response.text).segments else None

    live = wait_for(public_segments, timeout=30, what="a segment made after going live")
    public = [s.uri for s in live.segments]
    assert not set(public) & set(preview), f"backstage segments in the viewers' playlist: {public}"
    response = origin.get(f"hls/cmaf/360p/{public[0]}")
    assert response.status_code == 200 and response.headers["cache-control"].startswith("max-age")
    for uri in preview:
        refused = origin.get(f"hls/cmaf/360p/{uri}")
        assert refused.status_code == 403 and "not broadcast to viewers" in refused.json()["error"], uri
        assert refused.headers["cache-control"] == "no-store"
    assert origin.get("hls/cmaf/360p/init_r1_360p.mp4").status_code == 200  # codec headers, no picture
    # The member's view still has the preview, and the bytes stay out of shared caches.
    full = m3u8.loads(origin.get("hls/cmaf/360p/index.m3u8", params=member).text)
    assert [s.uri.split("?")[0] for s in full.segments][: len(preview)] == preview
    kept = origin.get(f"hls/cmaf/360p/{preview[0]}", params=member)
    assert kept.status_code == 200 and kept.headers["cache-control"].startswith("private")
    # The backstage screenshot is the preview too; the next one is for everyone.
    assert origin.get("screenshot.jpg").status_code == 403
    put_screenshot(origin)
    assert origin.get("screenshot.jpg").status_code == 200

    origin.set_phase("ended")
    ended = m3u8.loads(origin.get("hls/cmaf/360p/index.m3u8").text)
    assert ended.is_endlist and ended.segments[0].uri == public[0]
    assert origin.get(f"hls/cmaf/360p/{ended.segments[0].uri}").status_code == 200
    assert origin.get(f"hls/cmaf/360p/{preview[-1]}").status_code == 403
    origin.set_phase("backstage")  # a stream can go back to backstage: closed again
    assert origin.get("hls/cmaf/master.m3u8").status_code == 403


def test_outputs_made_only_for_a_recording_are_not_broadcast(backstage_origin):
    """Live, but HLS broadcasting off (a transcoded recording keeps the transcoder running):
    viewers may come in, yet get none of it; in-cluster readers get all of it."""
    origin = backstage_origin
    origin.put_desired(phase="live", publicBroadcasting=False)
    assert origin.get("hls/cmaf/master.m3u8").status_code == 200
    time.sleep(4)  # a few more segments, all private
    assert origin.get("hls/cmaf/360p/index.m3u8").status_code == 404
    internal = {"Authorization": f"Bearer {origin.read_token}"}
    assert len(m3u8.loads(origin.get("hls/cmaf/360p/index.m3u8", headers=internal).text).segments) >= 3
    origin.put_desired(publicBroadcasting=True)  # startHLSBroadcasting
    wait_for(
        lambda: origin.get("hls/cmaf/360p/index.m3u8").status_code == 200,
        timeout=30,
        what="the first broadcast segment",
    )


def test_viewers_allowed_opens_backstage_and_can_close_live(backstage_origin):
    origin = backstage_origin
    origin.put_desired(viewersAllowed=True)  # join-ahead window reached, still backstage
    assert origin.get("hls/cmaf/master.m3u8").status_code == 200
    origin.put_desired(phase="live", viewersAllowed=False)
    assert origin.get("hls/cmaf/master.m3u8").status_code == 403
    assert origin.get("hls/cmaf/master.m3u8", params={"token": origin.token()}).status_code == 200
    origin.put_desired(viewersAllowed=None)  # unset: the phase decides again
    assert origin.get("hls/cmaf/master.m3u8").status_code == 200
