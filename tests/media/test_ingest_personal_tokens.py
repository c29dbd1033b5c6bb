"""Personal publish tokens at a real ingest agent (nginx-rtmp, ffmpeg encoders over RTMP and SRT,
an aiortc WHIP client, the libsrt listener): a member publishes with their own token next to the
stream key; expired, revoked, foreign and non-member tokens are refused with the reason; taking
the right away drops them."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from onair import endpoints, tokens
from tests.fixtures.ingest import WhipPublisher
from tests.fixtures.media import wait_for

pytestmark = pytest.mark.media

LIVESTREAM = "events/keynote"
HOST = {"userId": "alice", "role": "host", "mayPublish": True}
VIEWER = {"userId": "bob", "role": "user", "mayPublish": False}


def start(ingest_agent, protocols=("rtmp",), members=(HOST, VIEWER)):
    ingest = ingest_agent.start(protocols=protocols, livestream=LIVESTREAM)
    if members is not None:
        ingest.put_desired(members=list(members))
    return ingest


def token(ingest, user="alice", *, secret=None, livestream=LIVESTREAM, issued=None, ttl=3600.0):
    issued = time.time() - 5 if issued is None else issued
    return tokens.mint_publish(secret or ingest.publish_secret, livestream, user, issued + ttl, issued)


def refusal(ingest, reason):
    return next((r for r in ingest.status()["refusals"] if r["reason"] == reason), None)


def wait_refusal(ingest, reason, timeout=15):
    return wait_for(lambda: refusal(ingest, reason), timeout, what=f"a {reason} refusal in /status")


def publisher_metric(ingest):
    return [line for line in ingest.metrics().splitlines() if line.startswith("onair_ingest_publisher{")]


def test_member_publishes_over_rtmp_with_a_personal_token_and_the_stream_key_still_works(ingest_agent, publishers):
    ingest = start(ingest_agent)
    personal = token(ingest)
    pub = publishers.rtmp(ingest.rtmp_url_with_key(personal))
    status = ingest.wait_receiving()
    assert status["protocol"] == "rtmp" and status["publisher"] == "alice"
    assert any('user="alice"' in line and line.endswith(" 1.0") for line in publisher_metric(ingest)), publisher_metric(
        ingest
    )
    assert (
        'onair_ingest_member_publishes_total{livestream="events/keynote",outcome="accepted",slot="main",'
        'user="alice"} 1.0' in ingest.metrics()
    )
    ingest.wait_log("accepted rtmp publish by member alice from 127.0.0.1")
    pub.stop()
    ingest.wait_receiving(False, timeout=15)

    pub = publishers.rtmp(ingest.rtmp_url)
    status = ingest.wait_receiving()
    assert status["publisher"] is None
    wait_for(lambda: any('user=""' in line for line in publisher_metric(ingest)), 10, what="anonymous publisher")
    pub.stop()
    assert personal not in ingest.log_text() and personal.split(".")[2] not in ingest.metrics()


@pytest.mark.parametrize(
    "case, reason, words",
    [
        ("expired", "token_expired", "the personal publish token of alice expired at"),
        ("revoked", "token_revoked", "alice's personal publish token was issued at"),
        ("foreign", "wrong_key", "the token was issued for another livestream (events/other)"),
        ("stranger", "not_member", "mallory is not a member of the livestream"),
        ("no grant", "no_send_grant", "bob's role 'user' does not grant send-audio and send-video"),
        ("playback", "wrong_key", "a playback token cannot publish"),
    ],
)
def test_rtmp_refusals_say_why(ingest_agent, publishers, case, reason, words):
    ingest = start(ingest_agent)
    now = time.time()
    if case == "expired":
        key = token(ingest, issued=now - 7200, ttl=3600)
    elif case == "revoked":
        revoked_at = datetime.fromtimestamp(now - 60, timezone.utc).isoformat()
        ingest.put_desired(members=[{**HOST, "revokeTokensIssuedBefore": revoked_at}])
        key = token(ingest, issued=now - 120)
    elif case == "foreign":
        key = token(ingest, secret="the-playback-secret-of-the-other-livestream", livestream="events/other")
    elif case == "stranger":
        key = token(ingest, "mallory")
    elif case == "no grant":
        key = token(ingest, "bob")
    else:
        key = tokens.mint(ingest.publish_secret, LIVESTREAM, now + 600, user_id="alice", issued_at=now)
    pub = publishers.rtmp(ingest.rtmp_url_with_key(key))
    assert pub.wait(15) != 0
    entry = wait_refusal(ingest, reason)
    assert words in entry["message"] and entry["protocol"] == "rtmp"
    ingest.wait_log(f"refused rtmp publish from 127.0.0.1: {words}")
    assert key not in ingest.log_text() and key not in json.dumps(ingest.status())
    assert not ingest.status()["receiving"]


def test_a_revoked_token_is_refused_at_once_and_its_live_publisher_dropped(ingest_agent, publishers):
    """Removing the member while they publish: the publisher goes, and the same (unexpired) token
    is refused from then on; adding them back lets the same token in again."""
    ingest = start(ingest_agent)
    personal = token(ingest)
    publishers.rtmp(ingest.rtmp_url_with_key(personal))
    assert ingest.wait_receiving()["publisher"] == "alice"
    ingest.put_desired(members=[VIEWER])
    ingest.wait_receiving(False, timeout=15)
    assert (
        "live publisher dropped: alice was removed from the livestream's members"
        in wait_refusal(ingest, "not_member")["message"]
    )
    again = publishers.rtmp(ingest.rtmp_url_with_key(personal))
    assert again.wait(15) != 0
    ingest.wait_log("refused rtmp publish from 127.0.0.1: alice is not a member of the livestream")

    ingest.put_desired(members=[HOST.copy() | {"mayPublish": False}])  # the grant taken away instead
    assert publishers.rtmp(ingest.rtmp_url_with_key(personal)).wait(15) != 0
    wait_refusal(ingest, "no_send_grant")

    ingest.put_desired(members=[HOST])
    publishers.rtmp(ingest.rtmp_url_with_key(personal))
    assert ingest.wait_receiving()["publisher"] == "alice"


def test_personal_tokens_wait_for_the_operators_member_list(ingest_agent, publishers):
    ingest = start(ingest_agent, members=None)
    pub = publishers.rtmp(ingest.rtmp_url_with_key(token(ingest)))
    assert pub.wait(15) != 0
    assert "has not received the livestream's members" in wait_refusal(ingest, "not_member")["message"]
    publishers.rtmp(ingest.rtmp_url)  # the stream key does not depend on it
    assert ingest.wait_receiving()["publisher"] is None


def test_member_publishes_over_whip_with_a_personal_bearer_token(ingest_agent):
    ingest = start(ingest_agent, protocols=("whip",))
    personal = token(ingest)
    client = WhipPublisher(ingest.whip_url, personal).start()
    try:
        assert client.status == 201, client.body
        status = ingest.wait_receiving()
        assert status["protocol"] == "whip" and status["publisher"] == "alice"
        ingest.wait_log("accepted whip publish by member alice")
    finally:
        client.stop()
    assert client.delete_status == 200  # the token that opened the session may end it
    ingest.wait_receiving(False, timeout=10)
    assert personal not in ingest.log_text()


@pytest.mark.parametrize(
    "case, status, reason",
    [
        ("expired", 401, "token_expired"),
        ("stranger", 403, "not_member"),
        ("no grant", 403, "no_send_grant"),
        ("foreign", 401, "wrong_key"),
    ],
)
def test_whip_refusals_of_personal_tokens(ingest_agent, case, status, reason):
    ingest = start(ingest_agent, protocols=("whip",))
    key = {
        "expired": lambda: token(ingest, issued=time.time() - 7200, ttl=3600),
        "stranger": lambda: token(ingest, "mallory"),
        "no grant": lambda: token(ingest, "bob"),
        "foreign": lambda: token(
            ingest, secret="the-playback-secret-of-the-other-livestream", livestream="events/other"
        ),
    }[case]()
    client = WhipPublisher(ingest.whip_url, key).start()
    client.stop()
    assert client.status == status, client.body
    assert json.loads(client.body)["reason"] == reason
    assert wait_refusal(ingest, reason)["protocol"] == "whip"
    assert key not in ingest.log_text()


def test_removing_the_member_ends_a_live_whip_session(ingest_agent):
    ingest = start(ingest_agent, protocols=("whip",))
    client = WhipPublisher(ingest.whip_url, token(ingest)).start()
    try:
        assert client.status == 201, client.body
        assert ingest.wait_receiving()["publisher"] == "alice"
        ingest.put_desired(members=[])
        ingest.wait_receiving(False, timeout=15)
        wait_refusal(ingest, "not_member")
        ingest.wait_log("ended: publish dropped (not_member)")
    finally:
        client.stop()


# ----------------------------------------------------------------------------- SRT
def srt_url(ingest, key):
    return endpoints.personal_srt_url(ingest.srt_url, key)


def test_member_publishes_over_srt_with_the_token_split_into_streamid_and_passphrase(ingest_agent, publishers):
    ingest = start(ingest_agent, protocols=("srt",))
    personal = token(ingest)
    url = srt_url(ingest, personal)
    assert personal.rsplit(".", 1)[1] in url and personal not in url  # the signature is only the passphrase
    pub = publishers.srt(url, width=320, height=180, fps=15)
    status = ingest.wait_receiving(timeout=30)
    assert status["protocol"] == "srt" and status["publisher"] == "alice"
    ingest.wait_log("accepted srt publish by member alice")
    pub.stop()
    ingest.wait_receiving(False, timeout=20)
    # The shared passphrase keeps working, and names nobody.
    publishers.srt(ingest.srt_url, width=320, height=180, fps=15)
    assert ingest.wait_receiving(timeout=30)["publisher"] is None
    assert personal.rsplit(".", 1)[1] not in ingest.log_text()


@pytest.mark.parametrize(
    "case, reason, words",
    [
        ("wrong passphrase", "wrong_key", "wrong passphrase for the personal publish token of alice"),
        ("expired", "token_expired", "the personal publish token of alice expired at"),
        ("stranger", "not_member", "mallory is not a member of the livestream"),
        ("no grant", "no_send_grant", "bob's role 'user' does not grant send-audio and send-video"),
    ],
)
def test_srt_refusals_of_personal_tokens_happen_in_the_handshake(ingest_agent, publishers, case, reason, words):
    ingest = start(ingest_agent, protocols=("srt",))
    if case == "wrong passphrase":
        url = srt_url(ingest, token(ingest)).replace("passphrase=", "passphrase=x")
    elif case == "expired":
        url = srt_url(ingest, token(ingest, issued=time.time() - 7200, ttl=3600))
    else:
        url = srt_url(ingest, token(ingest, "mallory" if case == "stranger" else "bob"))
    pub = publishers.srt(url, width=320, height=180, fps=15)
    assert pub.wait(30) != 0  # rejected before a byte of media: the caller sees its connection refused
    entry = wait_refusal(ingest, reason)
    assert words in entry["message"] and entry["protocol"] == "srt"
    ingest.wait_log(f"refused srt publish from 127.0.0.1: {words}")
    assert not ingest.status()["receiving"]


def test_removing_the_member_hangs_up_on_their_srt_call(ingest_agent, publishers):
    ingest = start(ingest_agent, protocols=("srt",))
    pub = publishers.srt(srt_url(ingest, token(ingest)), width=320, height=180, fps=15)
    assert ingest.wait_receiving(timeout=30)["publisher"] == "alice"
    ingest.put_desired(members=[VIEWER])
    assert pub.wait(30) is not None
    assert "live publisher dropped: alice was removed" in wait_refusal(ingest, "not_member")["message"]
