"""The WHEP sessions an origin replica let in, and which of them the access rules turn away later."""

from __future__ import annotations

import time

import pytest

from onair import tokens
from onair.agent.origin import access, whep

STREAM = "media/show"
SECRET = "k" * 32


def rule(phase: str, public: bool, now: float, secret: str = SECRET):
    open_ = access.open_to_viewers(phase, None)
    return lambda token: access.live_refusal(access.decide(open_, token, secret, STREAM, now), public)


def test_live_refusal_is_what_hls_refuses_for_the_live_edge():
    now = time.time()
    member = tokens.mint(SECRET, STREAM, now + 60)
    assert rule("live", True, now)(None) is None
    assert rule("live", True, now)(member) is None
    assert "token is required" in rule("backstage", True, now)(None)
    assert rule("backstage", True, now)(member) is None
    # Live but not broadcast to viewers (publicBroadcasting off): members only.
    assert rule("live", False, now)(None) == access.NOT_BROADCAST_NOW
    assert rule("live", False, now)(member) is None
    # A token past its exp: refused wherever a member is required, an ordinary viewer where anyone may watch.
    assert "expired" in rule("backstage", True, now + 61)(member)
    assert rule("live", False, now + 61)(member) == access.NOT_BROADCAST_NOW
    assert rule("live", True, now + 61)(member) is None
    # A rotated playback secret: the tokens of the old one no longer open backstage, as for HLS.
    assert "signature" in rule("backstage", True, now, secret="r" * 32)(member)


def test_refused_sessions_are_named_once_with_the_reason():
    now = time.time()
    sessions = whep.Sessions()
    sessions.admit("public", None, 1.0)
    sessions.admit("member", tokens.mint(SECRET, STREAM, now + 5), 1.0)
    sessions.admit("host", tokens.mint(SECRET, STREAM, now + 600), 1.0)
    assert sessions.refused(rule("live", True, now)) == []
    ended = sessions.refused(rule("backstage", True, now))
    assert [(s.id, "token is required" in why) for s, why in ended] == [("public", True)]
    # Ending: not named again while the transcoder is asked; named again if it could not be told.
    assert sessions.refused(rule("backstage", True, now)) == []
    sessions.end_failed("public")
    assert [s.id for s, _ in sessions.refused(rule("backstage", True, now))] == ["public"]
    sessions.forget("public")
    expired = sessions.refused(rule("backstage", True, now + 6))
    assert [(s.id, "expired" in why) for s, why in expired] == [("member", True)]
    assert "host" in sessions and len(sessions) == 3 - 1


def test_the_transcoders_list_prunes_what_it_ended_but_not_what_is_newer_than_the_question():
    sessions = whep.Sessions()
    sessions.admit("left", None, 1.0)
    sessions.admit("plays", None, 2.0)
    sessions.admit("newer", None, 5.0)  # let in while the list was on its way: not in it yet
    assert sessions.reconcile({"plays": None}, asked_at=4.0) == (["left"], [])
    assert "plays" in sessions and "newer" in sessions and "left" not in sessions


def test_sessions_let_in_elsewhere_are_taken_on_with_their_token_and_checked():
    """Another replica's, or this pod's before it restarted: listed by the transcoder, checked here too."""
    now = time.time()
    sessions = whep.Sessions(limit=3)
    sessions.admit("mine", None, 1.0)
    member = tokens.mint(SECRET, STREAM, now + 60)
    listed = {"mine": None, "public": None, "member": member, "one-too-many": None}
    gone, adopted = sessions.reconcile(listed, asked_at=4.0)
    assert gone == [] and adopted == ["public", "member"] and len(sessions) == 3  # bounded
    assert [s.id for s, _ in sessions.refused(rule("backstage", True, now))] == ["mine", "public"]


def test_the_transcoders_list_is_read_strictly():
    member = "a.b.c"
    body = {"sessions": [{"id": "x", "token": None}, {"id": "y", "token": member}, {"id": "z", "token": ""}]}
    assert whep.listed_sessions(body) == {"x": None, "y": member, "z": None}
    for bad in ({"sessions": ["x"]}, {"sessions": None}, ["x"], {"sessions": [{"token": "t"}]}):
        with pytest.raises(ValueError):
            whep.listed_sessions(bad)


def test_the_table_is_bounded():
    sessions = whep.Sessions(limit=2)
    sessions.admit("a", None, 1.0)
    assert not sessions.full()
    sessions.admit("b", None, 1.0)
    assert sessions.full()
    sessions.forget("a")
    assert not sessions.full()


def test_session_id_from_a_location():
    assert whep.session_id("whep/0123abcd") == "0123abcd"
    assert whep.session_id("/whep/0123abcd/") == "0123abcd"
    assert whep.session_id("http://tx:8080/whep/0123abcd") == "0123abcd"
    assert whep.session_id(None) is None and whep.session_id("") is None
