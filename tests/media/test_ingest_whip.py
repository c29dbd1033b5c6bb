"""WHIP ingest with a real aiortc client on 127.0.0.1 pushing synthetic H.264 + Opus."""

from __future__ import annotations

import pytest

from tests.fixtures.ingest import WhipPublisher
from tests.fixtures.media import ffprobe_json, wait_for

pytestmark = pytest.mark.media


def test_whip_publish_is_received_readable_and_ended_by_delete(ingest_agent):
    ingest = ingest_agent.start(protocols=("whip",))
    client = WhipPublisher(ingest.whip_url, ingest.whip_token, width=320, height=240).start()
    try:
        assert client.status == 201, client.body
        assert client.location and client.location.startswith("/whip/")
        assert "a=rtpmap" in client.body and "H264" in client.body and "opus" in client.body
        st = ingest.wait_receiving()
        assert st["protocol"] == "whip"
        assert st["video"]["codec"] == "h264" and (st["video"]["width"], st["video"]["height"]) == (320, 240)
        assert st["audio"] == {"codec": "aac", "channels": 2, "sampleRate": 48000}
        streams = {s["codec_type"]: s for s in ffprobe_json(ingest.read_url)["streams"]}
        assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    finally:
        client.stop()
    assert client.delete_status == 200
    ingest.wait_receiving(False, timeout=10)
    ingest.wait_log("ended: client sent DELETE")


def test_whip_over_https_when_a_certificate_is_configured(ingest_agent):
    ingest = ingest_agent.start(protocols=("whip",), with_tls=True)
    assert ingest.whip_url.startswith("https://")
    client = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
    try:
        assert client.status == 201, client.body
        assert ingest.wait_receiving()["protocol"] == "whip"
    finally:
        client.stop()


@pytest.mark.parametrize(
    "token, video, audio, status, text",
    [
        ("wrong", "h264", "opus", 401, "bearer token"),
        (None, "h264", "opus", 401, "bearer token"),
        ("right", "vp8", "opus", 406, "WebRTC requires H.264 video and OPUS audio. Both tracks must be present"),
        ("right", "h264", None, 406, "WebRTC requires H.264 video and OPUS audio. Both tracks must be present"),
        ("right", None, "opus", 406, "WebRTC requires H.264 video and OPUS audio. Both tracks must be present"),
    ],
)
def test_whip_refusals(ingest_agent, token, video, audio, status, text):
    ingest = ingest_agent.start(protocols=("whip",))
    client = WhipPublisher(
        ingest.whip_url, ingest.whip_token if token == "right" else token, video_codec=video, audio_codec=audio
    ).start()
    client.stop()
    assert client.status == status and text in client.body
    ingest.wait_log("refused whip publish from 127.0.0.1")
    assert ingest.whip_token not in ingest.log_text()
    assert not ingest.status()["receiving"]


def test_second_whip_and_cross_protocol_publishers_are_refused(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp", "whip"))
    client = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
    try:
        assert client.status == 201
        ingest.wait_receiving()
        second = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
        second.stop()
        assert second.status == 409 and "already live" in second.body
        rtmp = publishers.rtmp(ingest.rtmp_url)
        assert rtmp.wait(15) != 0
        ingest.wait_log("refused rtmp publish from 127.0.0.1: whip is already live on this slot")
        assert ingest.status()["protocol"] == "whip"
    finally:
        client.stop()
    ingest.wait_receiving(False, timeout=10)
    rtmp = publishers.rtmp(ingest.rtmp_url)
    ingest.wait_receiving()
    third = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
    third.stop()
    assert third.status == 409 and "rtmp is already live on this slot (only one protocol at a time)" in third.body


def test_whip_client_that_vanishes_ends_its_session(ingest_agent):
    ingest = ingest_agent.start(protocols=("whip",))
    client = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
    assert client.status == 201
    ingest.wait_receiving()
    client.vanish()
    ingest.wait_receiving(False, timeout=15)
    ingest.wait_log("WHIP session", timeout=5)
    wait_for(lambda: "ended" in ingest.log_text(), 15, what="the WHIP session to end")
    # The slot is free again.
    again = WhipPublisher(ingest.whip_url, ingest.whip_token).start()
    try:
        assert again.status == 201, again.body
        ingest.wait_receiving()
    finally:
        again.stop()


def test_whip_cors_preflight_and_content_type(ingest_agent):
    import urllib.error
    import urllib.request

    ingest = ingest_agent.start(protocols=("whip",))
    preflight = urllib.request.Request(
        ingest.whip_url,
        method="OPTIONS",
        headers={
            "Origin": "https://studio.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    with urllib.request.urlopen(preflight, timeout=10) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert "Location" in resp.headers["Access-Control-Expose-Headers"]
    wrong_type = urllib.request.Request(
        ingest.whip_url,
        data=b"v=0",
        method="POST",
        headers={"Authorization": f"Bearer {ingest.whip_token}", "Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(wrong_type, timeout=10)
        raise AssertionError("a JSON body must not be accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 415 and b"application/sdp" in exc.read()


def test_whip_announces_its_ice_servers_with_time_limited_turn_credentials(ingest_agent, tmp_path):
    """The answer's Link headers (and an authenticated OPTIONS, for clients that must know them
    before their offer) carry the client ICE servers, TURN ones with TURN REST API credentials
    minted from the shared secret file; an OPTIONS without the token (a CORS preflight) gets none."""
    import time

    import requests

    from onair.agent.webrtc.iceservers import turn_rest_credentials

    secret = tmp_path / "turnSecret"
    secret.write_text("shared-with-coturn\n")
    client_urls = [
        "turn:turn.example.test:31478?transport=udp",
        "turn:turn.example.test:31478?transport=tcp",
        "stun:stun.example.test:3478",
    ]
    ingest = ingest_agent.start(
        protocols=("whip",),
        whip_client_ice_servers=client_urls,
        whip_turn_secret_file=str(secret),
        whip_turn_credential_ttl_seconds=600,
    )

    def check(servers, when: float) -> None:
        assert [s.url for s in servers] == client_urls
        assert servers[2].username is None and servers[2].credential is None
        for s in servers[:2]:
            expiry, _, user = s.username.partition(":")
            assert when + 600 - 5 <= int(expiry) <= time.time() + 600 + 1, (s.username, when)
            assert s.credential == turn_rest_credentials("shared-with-coturn", user, int(expiry))[1]

    preflight = requests.options(ingest.whip_url, headers={"Access-Control-Request-Method": "POST"}, timeout=5)
    assert preflight.status_code == 204 and "Link" not in preflight.headers, preflight.headers
    wrong = requests.options(ingest.whip_url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert "Link" not in wrong.headers, wrong.headers

    t0 = time.time()
    client = WhipPublisher(ingest.whip_url, ingest.whip_token, ice_servers_from_options=True).start()
    try:
        assert client.status == 201, client.body
        check(client.options_ice_servers, t0)
        check(client.answer_ice_servers, t0)
        # The session's own id names the answer's credentials, so coturn's logs tell sessions apart.
        assert client.answer_ice_servers[0].username.endswith(":" + client.location.rsplit("/", 1)[1])
        assert "Link" in client_expose_headers(ingest.whip_url)
        assert ingest.wait_receiving()["protocol"] == "whip"
    finally:
        client.stop()
    assert "shared-with-coturn" not in ingest.log_text()


def client_expose_headers(url: str) -> str:
    import requests

    return requests.options(url, timeout=5).headers.get("Access-Control-Expose-Headers", "")
