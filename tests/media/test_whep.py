"""WHEP playback from the transcoder: one WebRTC rendition encoded once, its packets forwarded to
every viewer (aiortc viewers here; Chromium in tests/browser/test_player_whep.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp
import httpx
import pytest

from tests.fixtures.media import wait_for
from tests.fixtures.whep import WhepError, WhepViewer, loopback_ice

pytestmark = [pytest.mark.media, pytest.mark.timeout(180)]


@pytest.fixture
def whep_source(ingest_agent, transcoder_agent, publishers):
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    tx = transcoder_agent.start(
        main_url=ingest.read_url,
        tracks=["360p", "240p"],
        source_size=(640, 360),
        whep=True,
        whep_ice_addresses=["127.0.0.1"],
        hls_mpegts=False,
        dash=False,
    )
    publishers.rtmp(ingest.rtmp_url, width=640, height=360, fps=30)
    ingest.wait_receiving()
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    return tx


def encoders(tx) -> list[int]:
    """x264 instances of the transcoder's processes: the encoder's (one per rung it encodes and one
    for WebRTC) are in one ffmpeg; any other ffmpeg would be an encoder per viewer."""
    return tx.pids("ffmpeg")


async def test_viewers_get_the_one_encoded_rendition_and_delete_ends_the_session(whep_source):
    tx = whep_source
    loopback_ice()
    url = f"{tx.url}/whep"
    auth = tx.auth_headers()
    # Not broadcasting: 503, with the reason.
    with pytest.raises(WhepError) as refused:
        await WhepViewer.open(url, headers=auth)
    assert refused.value.status == 503 and "not live" in refused.value.body
    tx.put_desired(phase="live", broadcasting=True)
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    processes = sorted(encoders(tx))
    viewers = []
    try:
        for _ in range(3):
            viewers.append(await WhepViewer.open(url, headers=auth))
        for viewer in viewers:
            await viewer.wait_frames(60, timeout=30, audio=50)
        for viewer in viewers:
            assert viewer.sizes == {(640, 360)}
            pts = viewer.video_pts
            assert all(b > a for a, b in zip(pts, pts[1:])), "video timestamps do not advance"
        # Forwarded, not encoded per viewer: no process was started for them, and aiortc's senders
        # never opened an encoder (H264Encoder creates its codec context on the first encode).
        assert sorted(encoders(tx)) == processes
        # DELETE ends the session: the tracks end, a second DELETE is a 404.
        assert await viewers[0].delete() == 200
        await wait_for_async(lambda: viewers[0].ended is not None or viewers[0].pc.connectionState != "connected", 10)
        assert await viewers[0].delete() == 404
        before = viewers[1].video_frames
        await asyncio.sleep(2)
        assert viewers[1].video_frames > before + 30, "the other viewers stopped with the first"
        metrics = tx.request("GET", "/metrics")[1].decode()
        assert 'onair_transcoder_whep_viewers{livestream="default/test"} 2.0' in metrics
        forwarded = {
            kind: float(line.rsplit(" ", 1)[1])
            for kind in ("video", "audio")
            for line in metrics.splitlines()
            if line.startswith(f'onair_transcoder_whep_packets_forwarded_total{{kind="{kind}"')
        }
        # Every frame a viewer decoded was a packet of the shared encoder handed to its sender.
        assert forwarded["video"] >= sum(v.video_frames for v in viewers), forwarded
    finally:
        for viewer in viewers:
            await viewer.close()


async def test_bad_offers_are_refused_with_the_reason(whep_source):
    tx = whep_source
    loopback_ice()
    url = f"{tx.url}/whep"
    auth = tx.auth_headers()
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(url, data=b"hello", headers={"Content-Type": "application/sdp"}) as resp:
            assert resp.status == 400 and "not an SDP offer" in (await resp.json())["error"]
        async with http.post(url, data=b"v=0\r\n", headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 415
    with pytest.raises(WhepError) as refused:
        await WhepViewer.open(
            url,
            headers=auth,
            offer_transform=lambda sdp: "\r\n".join(line for line in sdp.split("\r\n") if "H264" not in line) + "\r\n",
        )
    assert refused.value.status == 406 and "H.264" in refused.value.body
    # The agent API: without the agent token nobody gets in (the origin holds it).
    with pytest.raises(WhepError) as refused:
        await WhepViewer.open(url)
    assert refused.value.status == 401


async def wait_for_async(predicate, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


async def test_the_origin_lets_viewers_in_as_for_hls_and_passes_sessions_on(whep_source, origins):
    tx = whep_source
    loopback_ice()
    origin = origins.start(phase="backstage", whep_url=f"{tx.url}/whep", agent_token_file=tx.config.agent_token_file)
    off = origins.start(phase="live")  # a Livestream without outputs.webrtc
    url = origin.url("whep")
    tx.put_desired(phase="backstage", broadcasting=True)  # the backstage preview
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    # Backstage: a playback token is required, exactly as for HLS; a bad one is refused with the reason.
    with pytest.raises(WhepError) as refused:
        await WhepViewer.open(url)
    assert refused.value.status == 403 and "playback token is required" in refused.value.body
    with pytest.raises(WhepError) as refused:
        await WhepViewer.open(
            url, headers={"Authorization": f"Bearer {origin.token(secret='the-playback-secret-of-another-livestream')}"}
        )
    assert refused.value.status == 403 and "playback token refused" in refused.value.body
    with pytest.raises(WhepError) as refused:
        await WhepViewer.open(url, headers={"Authorization": f"Bearer {origin.token(ttl=-60)}"})
    assert refused.value.status == 403 and "expired" in refused.value.body
    with pytest.raises(WhepError) as refused:
        await WhepViewer.open(off.url("whep"))
    assert refused.value.status == 404 and "not enabled" in refused.value.body
    member = await WhepViewer.open(url, headers={"Authorization": f"Bearer {origin.token()}"})
    viewer = None
    try:
        assert member.location == f"{url}/{member.location.rsplit('/', 1)[1]}"
        await member.wait_frames(30, timeout=30, audio=20)
        # Live: everyone.
        origin.set_phase("live")
        viewer = await WhepViewer.open(f"{url}?token=ignored-once-open")
        await viewer.wait_frames(30, timeout=30)
        assert await member.delete() == 200  # DELETE on the origin's Location ends the transcoder's session
        assert await member.delete() == 404
        status, body = tx.request("GET", "/metrics")
        assert 'onair_transcoder_whep_viewers{livestream="default/test"} 1.0' in body.decode()
    finally:
        await member.close(delete=False)
        if viewer is not None:
            await viewer.close()
    # The stream not live: 503 with the reason, through the origin.
    tx.put_desired(phase="live", broadcasting=False)
    tx.wait_status(lambda s: not s.get("runId"), 30, "encoder stopped")
    with pytest.raises(WhepError) as refused:
        await WhepViewer.open(url)
    assert refused.value.status == 503 and "not live" in refused.value.body


async def test_a_viewer_keeps_its_session_across_an_encoder_restart(whep_source):
    tx = whep_source
    loopback_ice()
    tx.put_desired(phase="live", broadcasting=True)
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    viewer = await WhepViewer.open(f"{tx.url}/whep", headers=tx.auth_headers())
    try:
        await viewer.wait_frames(30, timeout=30)
        for _ in range(2):  # the packets still queued for viewers outlive the encoder's connection
            run = tx.status()["runId"]
            os.kill(tx.encoder_pid(), signal.SIGKILL)
            tx.wait_status(lambda s: s.get("runId") not in (None, run), 30, "a new encoder run")
            before = viewer.video_frames
            await viewer.wait_frames(before + 45, timeout=30)
        pts = viewer.video_pts
        assert all(b > a for a, b in zip(pts, pts[1:])), "the forwarded clock went back at a restart"
        assert viewer.pc.connectionState == "connected" and viewer.ended is None
        # The broadcast stops (backstage again, ended): the session ends, it does not idle on.
        tx.put_desired(phase="backstage", broadcasting=False)
        await wait_for_async(lambda: viewer.pc.connectionState == "closed" or viewer.ended is not None, 20)
        assert whep_viewers(tx) == 0
    finally:
        await viewer.close()


def test_options_hands_viewers_the_ice_servers_with_turn_credentials_only_if_they_may_watch(
    transcoder_agent, origins, tmp_path
):
    from onair.agent.webrtc.iceservers import parse_ice_server_links

    secret = tmp_path / "turnSecret"
    secret.write_text("shared-turn-secret")
    turn, stun = "turn:turn.example.org:3478?transport=udp", "stun:stun.example.org:3478"
    tx = transcoder_agent.start(
        main_url="rtmp://127.0.0.1:9/live/none",
        whep=True,
        whep_ice_addresses=["127.0.0.1"],
        whep_client_ice_servers=[turn, stun],
        whep_turn_secret_file=str(secret),
    )
    origin = origins.start(phase="backstage", whep_url=f"{tx.url}/whep", agent_token_file=tx.config.agent_token_file)
    with httpx.Client() as http:
        refused = http.options(origin.url("whep"))
        assert refused.status_code == 403 and "playback token is required" in refused.json()["error"]
        answer = http.options(origin.url("whep"), headers={"Authorization": f"Bearer {origin.token()}"})
        assert answer.status_code == 204, answer.text
        servers = parse_ice_server_links(answer.headers.get_list("link"))
        assert [s.url for s in servers] == [turn, stun]
        assert servers[0].username and servers[0].credential and servers[1].credential is None
        # A CORS preflight is no viewer: no credentials, just what the browser needs to send the real request.
        preflight = http.options(
            origin.url("whep"), headers={"Origin": "https://site.example", "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 204 and "link" not in preflight.headers
        assert "POST" in preflight.headers["access-control-allow-methods"]
        origin.set_phase("live")
        assert http.options(origin.url("whep")).status_code == 204
        # Live, but the HLS broadcast is off (GetStream's): members only, as for HLS segments.
        origin.put_desired(phase="live", public_broadcasting=False)
        private = http.options(origin.url("whep"))
        assert private.status_code == 403 and "not broadcast to viewers" in private.json()["error"]
        assert (
            http.options(
                origin.url("whep"), headers={"Authorization": f"Bearer {origin.token(user_id='host-1')}"}
            ).status_code
            == 204
        )
        origin.put_desired(phase="live", public_broadcasting=True)
        # Not live: the offer is refused with the reason, the ICE servers are not.
        post = http.post(
            origin.url("whep"),
            content=b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n",
            headers={"Content-Type": "application/sdp"},
        )
        assert post.status_code == 503 and "not live" in post.json()["error"] and post.headers["retry-after"] == "2"


VANISHING_VIEWER = """
import asyncio, sys
from tests.fixtures.whep import WhepViewer, loopback_ice
async def main():
    loopback_ice()
    viewer = await WhepViewer.open(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
    await viewer.wait_frames(15, timeout=30)
    print("playing", flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""


@pytest.mark.slow
def test_a_viewer_that_vanishes_without_delete_is_dropped(whep_source):
    """A browser tab killed, a network gone: no DELETE, no DTLS close. ICE consent checks fail and the
    session ends by itself instead of holding its queue and sender for ever."""
    tx = whep_source
    tx.put_desired(phase="live", broadcasting=True)
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    proc = subprocess.Popen(
        [sys.executable, "-c", VANISHING_VIEWER, f"{tx.url}/whep", tx.agent_token or ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "playing"
        assert whep_viewers(tx) == 1
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: whep_viewers(tx) == 0, 60, what="the vanished viewer's session to end")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def whep_viewers(tx) -> float:
    metrics = tx.request("GET", "/metrics")[1].decode()
    return float(
        next(x for x in metrics.splitlines() if x.startswith("onair_transcoder_whep_viewers{")).rsplit(" ")[-1]
    )


async def test_sessions_end_when_the_stream_goes_backstage_again_unless_a_member_watches(whep_source, origins):
    """Access is checked at every HLS request; a WHEP session has no requests after its POST, so the
    origin ends those the rules now refuse: back to backstage, the public viewer goes, the member stays."""
    tx = whep_source
    loopback_ice()
    origin = origins.start(phase="live", whep_url=f"{tx.url}/whep", agent_token_file=tx.config.agent_token_file)
    tx.put_desired(phase="live", broadcasting=True)
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    url = origin.url("whep")
    public = await WhepViewer.open(url)
    member = await WhepViewer.open(url, headers={"Authorization": f"Bearer {origin.token(user_id='host-1')}"})
    try:
        await public.wait_frames(30, timeout=30)
        await member.wait_frames(30, timeout=30)
        origin.set_phase("backstage")
        await wait_for_async(lambda: session_over(public), 15)
        before = member.video_frames
        await member.wait_frames(before + 45, timeout=30)
        assert not session_over(member)
        assert whep_viewers(tx) == 1
        # Its session is gone at the transcoder too: the viewer's own DELETE finds nothing.
        assert await public.delete() == 404
        # Live but not broadcast to viewers (publicBroadcasting off): members only, as for HLS.
        origin.put_desired(phase="live", public_broadcasting=True)
        second = await WhepViewer.open(url)
        try:
            await second.wait_frames(30, timeout=30)
            origin.put_desired(phase="live", public_broadcasting=False)
            await wait_for_async(lambda: session_over(second), 15)
        finally:
            await second.close(delete=False)
        before = member.video_frames
        await member.wait_frames(before + 45, timeout=30)
    finally:
        await public.close(delete=False)
        await member.close()


async def test_a_members_session_ends_when_its_token_expires_before_the_stream_opens(whep_source, origins):
    tx = whep_source
    loopback_ice()
    origin = origins.start(phase="backstage", whep_url=f"{tx.url}/whep", agent_token_file=tx.config.agent_token_file)
    tx.put_desired(phase="backstage", broadcasting=True)
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    url = origin.url("whep")
    short = await WhepViewer.open(url, headers={"Authorization": f"Bearer {origin.token(ttl=8)}"})
    lasting = await WhepViewer.open(f"{url}?token={origin.token(ttl=600)}")
    try:
        await short.wait_frames(30, timeout=8)
        await wait_for_async(lambda: session_over(short), 20)
        before = lasting.video_frames
        await lasting.wait_frames(before + 45, timeout=30)
        assert whep_viewers(tx) == 1
    finally:
        await short.close(delete=False)
        await lasting.close()


def session_over(viewer: WhepViewer) -> bool:
    """The transcoder closed the viewer's peer connection: its tracks end (DTLS close)."""
    return viewer.ended is not None or viewer.pc.connectionState in ("closed", "failed")


async def test_origin_replicas_check_every_session_and_forget_the_ended_ones(whep_source, origins):
    """Two replicas in front of one transcoder (the operator pushes the desired state to each): a session
    is checked by the replica that proxied its POST and, once the transcoder lists it, by the other too;
    one its viewer ended through the other replica, or that the transcoder ended, is forgotten by both
    (the transcoder's list), so the tables do not grow."""
    tx = whep_source
    loopback_ice()
    a, b = (
        origins.start(phase="live", whep_url=f"{tx.url}/whep", agent_token_file=tx.config.agent_token_file)
        for _ in range(2)
    )
    tx.put_desired(phase="live", broadcasting=True)
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    public_a = await WhepViewer.open(a.url("whep"))
    public_b = await WhepViewer.open(b.url("whep"))
    member_b = await WhepViewer.open(b.url("whep"), headers={"Authorization": f"Bearer {b.token()}"})
    try:
        for viewer in (public_a, public_b, member_b):
            await viewer.wait_frames(15, timeout=30)
        await wait_for_async(lambda: origin_whep(a, "sessions") == origin_whep(b, "sessions") == 3, 30)
        # Its DELETE lands on the other replica (one Service in front of both): ended at the transcoder,
        # and the replica that let it in forgets it.
        async with aiohttp.ClientSession() as http:
            other = a.url(f"whep/{public_b.location.rsplit('/', 1)[1]}")
            async with http.delete(other) as resp:
                assert resp.status == 200
        await wait_for_async(lambda: origin_whep(a, "sessions") == origin_whep(b, "sessions") == 2, 30)
        # Back to backstage on both: the public session ends (once: the second DELETE finds nothing);
        # the member plays on.
        for origin in (a, b):
            origin.set_phase("backstage")
        await wait_for_async(lambda: session_over(public_a), 15)
        assert origin_whep(a, "sessions_ended_total") + origin_whep(b, "sessions_ended_total") == 1
        await wait_for_async(lambda: origin_whep(a, "sessions") == origin_whep(b, "sessions") == 1, 15)
        before = member_b.video_frames
        await member_b.wait_frames(before + 30, timeout=30)
        # The member leaves without DELETE (the tab closed: DTLS close): the transcoder ends it, b forgets it.
        await member_b.close(delete=False)
        await wait_for_async(lambda: whep_viewers(tx) == 0, 30)
        await wait_for_async(lambda: origin_whep(a, "sessions") == origin_whep(b, "sessions") == 0, 30)
    finally:
        for viewer in (public_a, public_b, member_b):
            await viewer.close(delete=False)


def origin_whep(origin, metric: str) -> float:
    name = f"onair_origin_whep_{metric} "
    return float(next(line for line in origin.metrics().splitlines() if line.startswith(name)).rsplit(" ")[-1])


async def test_sessions_let_in_before_an_origin_restart_are_still_checked(whep_source, origins):
    """The origin pod restarts (a rolling update) while viewers watch: the transcoder keeps their sessions
    and lists them with the token each came with, so the new process checks them as the old one did."""
    tx = whep_source
    loopback_ice()
    origin = origins.start(phase="live", whep_url=f"{tx.url}/whep", agent_token_file=tx.config.agent_token_file)
    tx.put_desired(phase="live", broadcasting=True)
    tx.wait_status(lambda s: s.get("broadcasting"), 60, "broadcasting")
    public = await WhepViewer.open(origin.url("whep"))
    member = await WhepViewer.open(origin.url("whep"), headers={"Authorization": f"Bearer {origin.token()}"})
    try:
        await public.wait_frames(15, timeout=30)
        await member.wait_frames(15, timeout=30)
        origins.restart(origin, phase="live")
        await wait_for_async(lambda: origin_whep(origin, "sessions") == 2, 30)
        origin.set_phase("backstage")
        await wait_for_async(lambda: session_over(public), 15)
        before = member.video_frames
        await member.wait_frames(before + 45, timeout=30)
        assert whep_viewers(tx) == 1
    finally:
        await public.close(delete=False)
        await member.close()
