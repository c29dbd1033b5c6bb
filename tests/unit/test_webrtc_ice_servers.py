"""TURN REST API credentials and the WHIP answer's Link headers (onair.agent.webrtc.iceservers)."""

from __future__ import annotations

import pytest

from onair.agent.webrtc.iceservers import (
    IceServer,
    link_header,
    parse_ice_server_links,
    session_ice_servers,
    turn_rest_credentials,
)


def test_credentials_follow_the_turn_rest_api_scheme_coturn_checks():
    # Expected password from `printf %s 1735689600:abc123 | openssl dgst -sha1 -hmac logen -binary | base64`.
    assert turn_rest_credentials("logen", "abc123", 1735689600) == ("1735689600:abc123", "uZwGCx+iH0LBeA5SJY/G/6G4UAQ=")


def test_credentials_refuse_an_empty_secret_and_an_id_with_the_separator():
    with pytest.raises(ValueError, match="empty"):
        turn_rest_credentials("", "abc", 1)
    with pytest.raises(ValueError, match="':'"):
        turn_rest_credentials("s", "a:b", 1)


def test_a_session_gets_credentials_for_turn_urls_only_expiring_after_the_ttl():
    servers = session_ice_servers(
        [
            "stun:stun.example.org:3478",
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:5349?transport=tcp",
        ],
        "s3cret",
        "sess1",
        now=1000.9,
        ttl_seconds=60,
    )
    assert servers[0] == IceServer("stun:stun.example.org:3478")
    for server in servers[1:]:
        assert server.username == "1060:sess1"
        assert server.credential == turn_rest_credentials("s3cret", "sess1", 1060)[1]
    # Without a secret the URLs go out bare (a TURN server without authentication, or a STUN one).
    assert session_ice_servers(["turn:t:3478"], None, "x", now=0) == [IceServer("turn:t:3478")]


def test_link_header_format_of_rfc_9725():
    server = IceServer("turn:turn.example.net:3478?transport=udp", "1735689600:abc123", "uZwGCx+iH0LBeA5SJY/G/6G4UAQ=")
    assert link_header(server) == (
        '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; '
        'username="1735689600:abc123"; credential="uZwGCx+iH0LBeA5SJY/G/6G4UAQ="; '
        'credential-type="password"'
    )
    assert link_header(IceServer("stun:stun.example.net")) == '<stun:stun.example.net>; rel="ice-server"'
    with pytest.raises(ValueError, match="Link header"):
        link_header(IceServer("turn:a b"))


def test_credentials_never_show_in_a_repr():
    server = IceServer("turn:t:3478", "1:u", "secret-password")
    assert "secret-password" not in repr(server) and "1:u" not in repr(server)


def test_link_headers_parse_back_including_several_links_in_one_header_and_other_rels():
    servers = [IceServer("turn:t.example:3478?transport=udp", "99:a", 'p"w\\d='), IceServer("stun:s.example:3478")]
    values = [link_header(servers[0]), f'<https://example.org/doc>; rel="help", {link_header(servers[1])}']
    assert parse_ice_server_links(values) == servers
