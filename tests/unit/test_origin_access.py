"""Who may play: the phase decides, the token opens backstage."""

import time

import pytest

from onair import tokens
from onair.agent.origin import access
from onair.agent.origin.access import SecretFile, decide as _decide, open_to_viewers, request_token

STREAM = "media/show"
SECRET = "k" * 32


def decide(phase, token, secret, livestream, now, viewers_allowed=None):
    return _decide(open_to_viewers(phase, viewers_allowed), token, secret, livestream, now)


def test_live_and_ended_are_open_to_anyone():
    assert decide("live", None, None, STREAM, time.time()).allowed
    assert decide("ended", None, SECRET, STREAM, time.time()).allowed


def test_backstage_needs_a_valid_token():
    now = time.time()
    good = tokens.mint(SECRET, STREAM, now + 60)
    assert decide("backstage", good, SECRET, STREAM, now) == decide("backstage", good, SECRET, STREAM, now)
    assert decide("backstage", good, SECRET, STREAM, now).allowed
    assert "token is required" in decide("backstage", None, SECRET, STREAM, now).reason
    assert "expired" in decide("backstage", tokens.mint(SECRET, STREAM, now - 1), SECRET, STREAM, now).reason
    assert (
        "another livestream"
        in decide("backstage", tokens.mint(SECRET, "media/x", now + 60), SECRET, STREAM, now).reason
    )


def test_backstage_without_a_secret_is_closed_to_everyone():
    decision = decide("backstage", "anything", None, STREAM, time.time())
    assert not decision.allowed and "no playback secret" in decision.reason


def test_only_jwt_shaped_tokens_are_carried_into_playlists():
    injected = "x\n#EXT-X-ENDLIST\nhttp://evil/"
    assert decide("live", injected, None, STREAM, time.time()).token is None
    assert not decide("backstage", injected, SECRET, STREAM, time.time()).allowed
    assert decide("live", "a.b-c_d", None, STREAM, time.time()).token == "a.b-c_d"


def test_token_from_query_or_bearer_header():
    assert request_token({"token": "q"}, "Bearer h") == ("q", True)
    assert request_token({}, "Bearer h") == ("h", False)
    assert request_token({}, "bearer  h ") == ("h", False)
    assert request_token({}, "Basic abc") == (None, False)
    assert request_token({}, None) == (None, False)


def test_secret_file_is_reread_when_it_changes(tmp_path):
    path = tmp_path / "secret"
    secret = SecretFile(str(path))
    assert secret.get() is None
    path.write_text("one\n")
    assert secret.get() == "one"
    replacement = tmp_path / "secret.new"
    replacement.write_text("two")
    replacement.replace(path)  # how a Secret volume update lands
    assert secret.get() == "two"
    assert SecretFile(None).get() is None


def test_viewers_allowed_overrides_the_phase():
    now = time.time()
    # join-ahead window reached, or backstage disabled: open while still in backstage
    assert decide("backstage", None, SECRET, STREAM, now, viewers_allowed=True).allowed
    # the control plane can keep a live stream closed to token holders
    assert not decide("live", None, SECRET, STREAM, now, viewers_allowed=False).allowed
    assert decide("live", tokens.mint(SECRET, STREAM, now + 60), SECRET, STREAM, now, viewers_allowed=False).allowed


def test_the_read_token_is_an_internal_reader_not_a_viewer():
    from onair.agent.origin.access import internal_reader

    assert internal_reader("Bearer r3ad", "r3ad") and internal_reader("bearer  r3ad ", "r3ad")
    assert not internal_reader("Bearer r3adx", "r3ad")
    assert not internal_reader("Bearer r3ad", None), "no read token configured: nobody is an internal reader"
    assert not internal_reader(None, "r3ad") and not internal_reader("Basic r3ad", "r3ad")
    assert not internal_reader("Bearer ", "r3ad")


@pytest.mark.parametrize(
    "value,expected",
    [
        ("max-age=31536000, immutable", "private, max-age=31536000, immutable"),
        ("no-cache", "private, no-cache"),
        ("public, max-age=5", "private, max-age=5"),
        ("max-age=60, s-maxage=3600", "private, max-age=60"),
        ("private, max-age=5", "private, max-age=5"),
        ("no-store", "no-store"),
        (None, "private, no-cache"),
        ("", "private, no-cache"),
    ],
)
def test_private_cache_control_keeps_shared_caches_out(value, expected):
    assert access.private_cache_control(value) == expected
