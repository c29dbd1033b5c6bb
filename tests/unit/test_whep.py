"""WHEP's pure parts: the offer check, keyframe detection, the forwarded clock, the encoder's WebRTC
output, and what the operator renders for it."""

from __future__ import annotations

import asyncio

import pytest

from onair import endpoints
from onair.agent.transcoder.ffmpeg_args import EncoderPlan, encoder_args, filter_graph, webrtc_rung
from onair.agent.transcoder.whep import Clock, ForwardedTrack, h264_nal_types, h264_starts_stream, offer_problem
from onair.api.livestream import PlaybackUrls
from onair.api.operator_config import OperatorConfig
from onair.render.children import render_children
from onair.render.ladder import build_ladder
from tests.unit.test_render_children import CREDS, TURN_CONFIG, by_kind, calltype, config_of, livestream, pods

OFFER = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
m=audio 9 UDP/TLS/RTP/SAVPF 111\r
a=rtpmap:111 opus/48000/2\r
m=video 9 UDP/TLS/RTP/SAVPF 96 102\r
a=rtpmap:96 VP8/90000\r
a=rtpmap:102 H264/90000\r
"""


def test_an_offer_must_be_sdp_and_receive_h264():
    assert offer_problem(OFFER) is None
    assert offer_problem("hello") == (400, "the body is not an SDP offer")
    status, message = offer_problem(OFFER.replace("a=rtpmap:102 H264/90000\r\n", ""))
    assert status == 406 and "H.264" in message and "video: vp8" in message
    status, message = offer_problem(OFFER.split("m=video")[0])  # audio only
    assert status == 406 and "audio: opus" in message


def test_a_viewer_can_start_only_at_an_idr_with_its_parameter_sets():
    idr = b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88"
    assert h264_nal_types(idr) == [9, 7, 8, 5]
    assert h264_starts_stream(idr)
    assert not h264_starts_stream(b"\x00\x00\x00\x01\x65\x88")  # IDR without SPS/PPS: undecodable alone
    assert not h264_starts_stream(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x41\x9a")


def test_the_forwarded_clock_keeps_going_across_encoder_runs():
    clock = Clock()
    assert [clock.map(p) for p in (126000, 129000, 132000)] == [0, 3000, 6000]
    clock.new_run()  # the next encoder starts its timeline anywhere, even behind
    assert [clock.map(p) for p in (90000, 93000)] == [9000, 12000]


async def test_a_slow_viewer_drops_its_backlog_and_restarts_at_a_keyframe():
    track = ForwardedTrack("video")
    track.offer("p0", keyframe=False)  # nothing before the first keyframe
    assert track.queue.qsize() == 0
    track.offer("k1", keyframe=True)
    for i in range(track.queue.maxsize - 1):
        track.offer(f"p{i}", keyframe=False)
    assert track.queue.full()
    track.offer("late", keyframe=False)  # too far behind: dropped, waits for a keyframe
    assert track.queue.qsize() == 0 and track.waiting_for_keyframe
    track.offer("k2", keyframe=True)
    assert await asyncio.wait_for(track.track.recv(), 1) == "k2"
    track.end()
    from aiortc.mediastreams import MediaStreamError

    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(track.track.recv(), 1)


def plan(**kw) -> EncoderPlan:
    return EncoderPlan(
        rungs=build_ladder(["1080p", "720p", "360p"], 1920, 1080),
        run_id="r1",
        fps=30.0,
        webrtc_url="tcp://127.0.0.1:5000",
        **kw,
    )


def test_the_webrtc_rendition_is_baseline_without_b_frames_with_headers_on_every_keyframe():
    p = plan()
    assert webrtc_rung(p).height == 720
    assert filter_graph(p).endswith("[s4]scale=1280:720,setsar=1,format=yuv420p[webrtc]")
    args = encoder_args(p)
    tail = args[args.index("[webrtc]") - 1 :]
    for option in (
        ["-profile:v", "baseline"],
        ["-bf:v", "0"],
        ["-tune:v", "zerolatency"],
        ["-x264-params:v", "repeat-headers=1"],
        ["-g:v", "30"],
        ["-c:a", "libopus"],
        ["-f", "mpegts"],
    ):
        assert any(tail[i : i + 2] == option for i in range(len(tail))), option
    assert tail[-1] == "tcp://127.0.0.1:5000"
    assert "+global_header" not in tail  # SPS/PPS in band: viewers join at any keyframe
    assert "[webrtc]" not in encoder_args(EncoderPlan(rungs=p.rungs, run_id="r1"))


def test_webrtc_rung_is_the_smallest_when_every_rung_is_above_720p():
    p = EncoderPlan(rungs=build_ladder(["1080p"], 1920, 1080), run_id="r1")
    assert webrtc_rung(p).height == 1080


def test_whep_is_rendered_only_with_outputs_webrtc():
    plain = render_children(livestream(), calltype(), OperatorConfig(), CREDS)
    assert not config_of(plain, "transcoder").whep and config_of(plain, "origin").whep_url is None
    assert plain.urls.playback.whep is None
    assert "show-transcoder" not in by_kind(plain, "Service")
    on = render_children(
        livestream(settingsOverride={"broadcasting": {"outputs": {"webrtc": True}}}),
        calltype(),
        TURN_CONFIG,
        CREDS,
        turn_secret="shared",
    )
    tx, origin = config_of(on, "transcoder"), config_of(on, "origin")
    assert tx.whep and origin.whep_url == "http://show-transcoder.media.svc:8080/whep"
    assert on.urls.playback.whep == on.urls.playback.player.replace("/player", "/whep")
    # ICE servers as the ingest's WHIP: its own inside, the public ones for viewers, TURN credentials.
    assert tx.whep_ice_servers == TURN_CONFIG.whip_ingest_ice_servers
    assert tx.whep_client_ice_servers == TURN_CONFIG.whip_ice_servers
    assert tx.whep_turn_secret_file == "/etc/onair/turn/turnSecret"
    assert any(v["name"] == "turn" for v in pods(on)["show-transcoder"]["volumes"])
    service = by_kind(on, "Service")["show-transcoder"]
    assert service["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in service["spec"]["ports"]] == ["agent"]
    policy = by_kind(on, "NetworkPolicy")["show-transcoder"]["spec"]["ingress"]
    assert policy[1]["ports"] == [{"protocol": "TCP", "port": "agent"}]
    assert policy[1]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "origin"
    assert policy[2] == {"ports": [{"protocol": "UDP", "port": 1024, "endPort": 65535}]}


def test_the_whep_url_is_spelled_by_endpoints():
    assert endpoints.playback_urls("https://x/live/ns/show")["whep"] == "https://x/live/ns/show/whep"
    assert "whep" in PlaybackUrls.model_fields
