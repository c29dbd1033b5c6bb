"""`onair token`: argument parsing and the membership check, without a cluster."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from onair.api.calltype import CallType
from onair.tokens_cli import Refused, check_member, parse_target, parse_ttl, player_url

CT = CallType.model_validate(
    {
        "metadata": {"name": "livestream"},
        "spec": {
            "grants": {"host": ["join-backstage", "send-video"], "admin": ["join-backstage"], "user": ["join-call"]}
        },
    }
)


def livestream(status: dict | None = None) -> dict:
    return {
        "metadata": {"namespace": "events", "name": "keynote"},
        "spec": {
            "callType": "livestream",
            "members": [
                {"userId": "alice", "role": "host"},
                {"userId": "bob", "role": "user"},
                {"userId": "carol", "role": "guest"},
            ],
        },
        "status": status or {},
    }


@pytest.mark.parametrize(
    "text,expected",
    [
        ("90", timedelta(seconds=90)),
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("2H", timedelta(hours=2)),
    ],
)
def test_ttl_forms(text, expected):
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["", "0", "0s", "2x", "h", "1h 30m", "-5m", "31d"])
def test_bad_ttls_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_ttl(text)


def test_target_is_namespace_slash_name():
    assert parse_target("events/keynote") == ("events", "keynote")
    for bad in ("keynote", "/keynote", "events/", "a/b/c"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_target(bad)


def test_a_host_passes():
    check_member(livestream(), CT, "alice")


def test_non_member_is_refused_with_the_member_list():
    with pytest.raises(Refused, match=r"'mallory' is not a member of events/keynote \(members: alice, bob, carol\)"):
        check_member(livestream(), CT, "mallory")


def test_role_without_join_backstage_is_refused_naming_the_roles_that_have_it():
    with pytest.raises(Refused, match=r"role 'user'.*does not grant join-backstage \(roles with it: admin, host\)"):
        check_member(livestream(), CT, "bob")


def test_unknown_role_and_missing_calltype_are_refused():
    with pytest.raises(Refused, match=r"role 'guest'.*its roles: admin, host, user"):
        check_member(livestream(), CT, "carol")
    with pytest.raises(Refused, match="CallType 'livestream' of events/keynote does not exist"):
        check_member(livestream(), None, "alice")


def test_player_url_carries_the_token():
    ls = livestream({"playback": {"player": "https://watch.example/events/keynote/player"}})
    assert player_url(ls, "a.b.c") == "https://watch.example/events/keynote/player?token=a.b.c"
    with pytest.raises(Refused, match="no status.playback.player"):
        player_url(livestream(), "a.b.c")


def test_publish_needs_both_send_grants_and_names_the_roles_that_have_them():
    ct = CallType.model_validate(
        {
            "metadata": {"name": "livestream"},
            "spec": {
                "grants": {
                    "host": ["send-audio", "send-video"],
                    "admin": ["send-audio", "send-video", "join-backstage"],
                    "user": ["send-video"],
                }
            },
        }
    )
    check_member(livestream(), ct, "alice", publish=True)
    with pytest.raises(
        Refused,
        match=r"role 'user'.*does not grant send-audio \(roles with send-audio and "
        r"send-video: admin, host\)",
    ):
        check_member(livestream(), ct, "bob", publish=True)
    with pytest.raises(Refused, match="with a role that has send-audio and send-video"):
        check_member(livestream(), ct, "mallory", publish=True)


def test_publish_url_carries_the_token_as_the_stream_key():
    from onair.tokens_cli import publish_url

    ls = livestream({"ingest": {"rtmp": "rtmp://ingest.example:1935/live"}})
    assert publish_url(ls, "a.b.c") == "rtmp://ingest.example:1935/live/a.b.c"
    with pytest.raises(Refused, match="WHIP bearer"):
        publish_url(livestream(), "a.b.c")


def test_srt_url_splits_the_token_into_streamid_and_passphrase():
    from onair.tokens_cli import srt_url

    ls = livestream({"ingest": {"srt": "srt://ingest.example:9998?streamid=publish&latency=2000000"}})
    assert (
        srt_url(ls, "aGVhZA.cGF5.c2ln")
        == "srt://ingest.example:9998?streamid=publish:aGVhZA.cGF5&passphrase=c2ln&latency=2000000"
    )
    with pytest.raises(Refused, match="status.ingest.srt"):
        srt_url(livestream(), "a.b.c")
