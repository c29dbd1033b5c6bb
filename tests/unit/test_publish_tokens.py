"""Personal publish tokens: minted per member, checked by the ingest against the members the
operator sends it (issue 11, section 3)."""

from datetime import datetime, timezone

import pytest

from onair import tokens
from onair.agent.ingest import auth
from onair.api import refusals
from onair.api.agent import PublishMember
from onair.api.calltype import CallType
from onair.controller.events import transition_events
from onair.render import grants
from onair.render import refusals as rrefusals

SECRET = "playback-secret-of-the-keynote-livestream"
STREAM = "events/keynote"
NOW = 1_750_000_000
HOST = PublishMember(user_id="alice", role="host", may_publish=True)
VIEWER = PublishMember(user_id="bob", role="user", may_publish=False)


def publish_token(user="alice", *, secret=SECRET, stream=STREAM, issued=NOW - 60, expires=NOW + 3600):
    return tokens.mint_publish(secret, stream, user, expires, issued)


def check(token, members=(HOST, VIEWER), now=NOW, secret=SECRET):
    return auth.check_personal_token(
        token, secret=secret, livestream=STREAM, members=None if members is None else list(members), now=now
    )


# ----------------------------------------------------------------------------- tokens
def test_mint_and_verify_round_trip():
    claims = tokens.verify_publish(SECRET, publish_token(), STREAM, now=NOW)
    assert (claims.user_id, claims.livestream, claims.issued_at, claims.expires_at) == (
        "alice",
        STREAM,
        NOW - 60,
        NOW + 3600,
    )


def test_a_playback_token_never_publishes_and_a_publish_token_never_watches():
    playback = tokens.mint(SECRET, STREAM, NOW + 60, user_id="alice", issued_at=NOW)
    with pytest.raises(tokens.TokenError, match="playback token cannot publish"):
        tokens.verify_publish(SECRET, playback, STREAM, now=NOW)
    with pytest.raises(tokens.TokenError, match="cannot be used to watch"):
        tokens.verify(SECRET, publish_token(), STREAM, now=NOW)


def test_expired_token_says_whose_it_was():
    with pytest.raises(tokens.TokenExpired) as caught:
        tokens.verify_publish(SECRET, publish_token(expires=NOW), STREAM, now=NOW)
    assert caught.value.claims["sub"] == "alice"


def test_publish_token_needs_a_member_and_an_issue_time():
    with pytest.raises(ValueError):
        tokens.mint_publish(SECRET, STREAM, "", NOW + 60, NOW)
    no_iat = tokens.mint(SECRET, STREAM, NOW + 60, user_id="alice", scope=tokens.PUBLISH_SCOPE)
    with pytest.raises(tokens.TokenError, match="iat"):
        tokens.verify_publish(SECRET, no_iat, STREAM, now=NOW)


def test_looks_like_token():
    assert tokens.looks_like_token(publish_token())
    assert not tokens.looks_like_token("sk_live_abcdef")
    assert not tokens.looks_like_token("a..b")


# ----------------------------------------------------------------------------- the ingest's verdict
def test_member_with_send_grants_is_accepted():
    verdict = check(publish_token())
    assert verdict.accept and verdict.user_id == "alice" and verdict.issued_at == NOW - 60


def test_expired_token_is_refused_as_expired():
    verdict = check(publish_token(expires=NOW - 1, issued=NOW - 100))
    assert verdict.reason == refusals.TOKEN_EXPIRED and verdict.user_id == "alice"
    assert "expired at" in verdict.detail and "alice" in verdict.detail


def test_removed_member_is_refused_even_though_the_token_is_valid():
    verdict = check(publish_token(), members=[VIEWER])
    assert verdict.reason == refusals.NOT_MEMBER and "alice is not a member" in verdict.detail


def test_role_without_send_grants_is_refused():
    verdict = check(publish_token("bob"))
    assert verdict.reason == refusals.NO_SEND_GRANT and "'user'" in verdict.detail


def test_tokens_issued_before_the_revocation_are_refused_later_ones_accepted():
    revoked = HOST.model_copy(update={"revoke_tokens_issued_before": datetime.fromtimestamp(NOW - 30, timezone.utc)})
    assert check(publish_token(issued=NOW - 60), members=[revoked]).reason == refusals.TOKEN_REVOKED
    assert check(publish_token(issued=NOW - 10), members=[revoked]).accept


def test_token_of_another_livestream_is_a_wrong_key_naming_that_livestream():
    foreign = publish_token(secret="playback-secret-of-the-other-livestream", stream="events/other")
    verdict = check(foreign)
    assert verdict.reason == refusals.WRONG_KEY and "another livestream (events/other)" in verdict.detail
    # Signed with this livestream's secret but for another audience: refused just the same.
    assert check(publish_token(stream="events/other")).reason == refusals.WRONG_KEY


def test_forged_signature_and_unknown_members_are_refused():
    token = publish_token()
    header, payload, signature = token.split(".")
    assert check(f"{header}.{payload}.{signature[:-2]}xx").reason == refusals.WRONG_KEY
    # Before the operator's first PUT the ingest does not know the members: nobody publishes by token.
    assert check(token, members=None).reason == refusals.NOT_MEMBER
    assert check(token, secret=None).reason == refusals.WRONG_KEY


def test_still_allowed_drops_a_live_publisher_when_rights_go():
    assert auth.still_allowed("alice", NOW - 60, [HOST]) is None
    assert auth.still_allowed("alice", NOW - 60, None) is None  # nothing known: keep
    assert auth.still_allowed("alice", NOW - 60, []).reason == refusals.NOT_MEMBER
    assert (
        auth.still_allowed("alice", NOW - 60, [HOST.model_copy(update={"may_publish": False})]).reason
        == refusals.NO_SEND_GRANT
    )


# ----------------------------------------------------------------------------- the publish decision
def req(name):
    return auth.PublishRequest(name=name, addr="203.0.113.7", clientid="1", tcurl="rtmp://x/live", app="live")


def decide(name, personal=None, **kw):
    args = dict(
        stream_key="the-stream-key",
        bridge_token="bridge",
        protocols=["rtmp", "whip"],
        active=True,
        holder=None,
        rtmps_addr=None,
        personal=personal,
    )
    args.update(kw)
    return auth.decide(req(name), **args)


def test_decide_accepts_a_personal_token_and_names_the_member_never_the_token():
    token = publish_token()
    decision = decide(token, check(token))
    assert decision.accept and decision.user_id == "alice"
    assert "by member alice" in decision.message and token not in decision.message
    assert decide("the-stream-key").accept and decide("the-stream-key").user_id is None


def test_decide_refuses_with_the_tokens_reason_and_still_applies_the_slot_rules():
    expired = publish_token(expires=NOW - 1, issued=NOW - 100)
    decision = decide(expired, check(expired))
    assert not decision.accept and decision.reason == refusals.TOKEN_EXPIRED
    token = publish_token()
    assert decide(token, check(token), active=False).reason == refusals.INACTIVE
    # A personal token works on a slot whose stream key is missing: it is a credential of its own.
    assert decide(token, check(token), stream_key=None).accept


# ----------------------------------------------------------------------------- the operator's side
def test_publish_members_from_the_calltype_grants():
    calltype = CallType.model_validate(
        {
            "metadata": {"name": "livestream"},
            "spec": {"grants": {"host": ["send-audio", "send-video"], "audio": ["send-audio"], "user": []}},
        }
    )
    spec = {
        "callType": "livestream",
        "members": [
            {"userId": "alice", "role": "host", "revokeTokensIssuedBefore": "2026-01-01T00:00:00Z"},
            {"userId": "carol", "role": "audio"},
            {"userId": "bob", "role": "user"},
            {"userId": "eve", "role": "nope"},
        ],
    }
    members = grants.publish_members({"spec": spec}, grants.member_access({"spec": spec}, calltype))
    assert [(m.user_id, m.may_publish) for m in members] == [
        ("alice", True),
        ("carol", False),
        ("bob", False),
        ("eve", False),
    ]
    assert members[0].revoke_tokens_issued_before == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_every_new_reason_has_an_event_reason_and_a_fix():
    for reason in (refusals.TOKEN_EXPIRED, refusals.TOKEN_REVOKED, refusals.NOT_MEMBER, refusals.NO_SEND_GRANT):
        assert refusals.event_reason(reason) != refusals.EVENT_REASON_UNKNOWN
        assert "see the ingest pod's log" not in rrefusals.fix(reason, "rtmp", "main", "events", "keynote", "s")


def test_ingest_events_say_who_publishes():
    started = transition_events({"live": False}, {"live": True, "publisher": "alice"})
    assert [(e.reason, "member alice" in e.message) for e in started] == [("IngestStarted", True)]
    anonymous = transition_events({"live": False}, {"live": True})
    assert "no personal token" in anonymous[0].message
    changed = transition_events({"live": True, "publisher": "alice"}, {"live": True, "publisher": "carol"})
    assert [e.reason for e in changed] == ["PublisherChanged"] and "carol" in changed[0].message
