"""Grants and members: capabilities per role, who may watch backstage, the member-tokens Secret."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from onair import tokens
from onair.api.calltype import CallType
from onair.api.livestream import LivestreamSpec
from onair.api.operator_config import OperatorConfig
from onair.controller.livestream import _wait_seconds
from onair.controller.reconcile import needs_apply
from onair.controller.runtime import LivestreamState, Runtime
from onair.render import grants
from onair.api.meta import child_selector
from onair.render.children import render_children
from onair.render.credentials import Credentials
from onair.render.lifecycle import desired_lifecycle
from onair.render.status import livestream_status

CREDS = Credentials(
    stream_key="streamkey0123",
    srt_passphrase="srtpassphrase0123",
    whip_token="whiptoken0123",
    playback_secret="p" * 32,
    upload_token="u" * 32,
    read_token="r" * 32,
    agent_token="a" * 32,
)
UID = "6f1c1f8e-0000-4000-8000-000000000001"
NOW = datetime(2026, 7, 14, 9, 30, 5, tzinfo=timezone.utc)
HOST = ["join-backstage", "send-audio", "send-video"]
# Kubernetes' IsConfigMapKey, which Secret data keys must pass.
K8S_KEY = re.compile(r"^(?!\.\.)(?!\.$)[-._a-zA-Z0-9]{1,253}$")


def calltype(grants_: dict | None = None) -> CallType:
    spec = {} if grants_ is None else {"grants": grants_}
    return CallType.model_validate({"metadata": {"name": "livestream"}, "spec": spec})


CT = calltype({"host": HOST, "admin": ["join-backstage"], "user": ["join-call", "read-call"]})


def livestream(members: list[tuple[str, str]] | None = None, name: str = "show") -> dict:
    spec: dict = {"callType": "livestream"}
    if members is not None:
        spec["members"] = [{"userId": u, "role": r} for u, r in members]
    return {
        "apiVersion": "onair.dev/v1alpha1",
        "kind": "Livestream",
        "metadata": {"name": name, "namespace": "media", "uid": UID, "generation": 1},
        "spec": spec,
    }


def tokens_secret(out):
    found = [o for o in out.objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-member-tokens")]
    return found[0] if found else None


def decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# ----------------------------------------------------------------------------- capabilities
def test_a_member_gets_the_capabilities_of_their_role():
    ls = livestream([("alice", "host"), ("bob", "user")])
    assert grants.capabilities(ls, CT, "alice") == tuple(HOST)
    assert grants.capabilities(ls, CT, "bob") == ("join-call", "read-call")
    assert grants.capabilities(ls, CT, "mallory") is None  # not a member at all


def test_unknown_role_grants_nothing_and_is_reported():
    ls = livestream([("alice", "host"), ("carol", "guest"), ("dave", "Host")])  # roles are case-sensitive
    access = grants.member_access(ls, CT)
    assert dict(access.capabilities)["carol"] == ()
    assert access.unknown == (grants.UnknownRole("carol", "guest"), grants.UnknownRole("dave", "Host"))
    assert access.backstage == ("alice",)
    message = grants.unknown_roles_message(access)
    assert "carol (role 'guest')" in message and "dave (role 'Host')" in message
    assert "'livestream'" in message and "admin, host, user" in message


def test_a_calltype_without_grants_knows_no_role():
    ls = livestream([("alice", "host")])
    for ct in (calltype(None), None):
        access = grants.member_access(ls, ct)
        assert access.backstage == () and access.unknown == (grants.UnknownRole("alice", "host"),)
        assert "(its roles: none)" in grants.unknown_roles_message(access)


def test_backstage_members_keep_spec_order():
    ls = livestream([("zoe", "host"), ("bob", "user"), ("amy", "admin")])
    assert grants.backstage_members(ls, CT) == ["zoe", "amy"]
    assert grants.backstage_members(livestream(), CT) == []


def test_duplicate_capabilities_count_once():
    assert grants.role_capabilities(calltype({"host": ["join-backstage", "join-backstage"]}), "host") == (
        "join-backstage",
    )


# ----------------------------------------------------------------------------- secret keys
@pytest.mark.parametrize("user_id", ["alice", "user-42", "A.B_c", "x" * 128])
def test_valid_user_ids_are_their_own_key(user_id):
    assert grants.secret_key(user_id) == user_id


@pytest.mark.parametrize("user_id", ["alice@example.com", "user:42", "..hidden", ".", "..", "名前", "a b/c"])
def test_other_user_ids_become_valid_distinct_keys(user_id):
    key = grants.secret_key(user_id)
    assert K8S_KEY.match(key), key
    assert key != user_id


def test_sanitised_keys_do_not_collide():
    ids = ["a@b", "a:b", "a b", "a_b"]
    assert len({grants.secret_key(i) for i in ids}) == len(ids)
    assert grants.secret_key("alice@example.com").startswith("alice_example.com-")


# ----------------------------------------------------------------------------- expiry buckets
def test_token_window_is_a_twelve_hour_bucket_valid_a_day():
    issued, expires = grants.token_window(NOW)
    assert issued == datetime(2026, 7, 14, 0, 0, tzinfo=timezone.utc)
    assert expires - issued == grants.TOKEN_VALIDITY == timedelta(hours=24)
    assert grants.tokens_refresh_at(NOW) == datetime(2026, 7, 14, 12, 0, tzinfo=timezone.utc)
    # Anywhere in the bucket: same window; a token read just before re-minting still has 12 h left.
    last_second = datetime(2026, 7, 14, 11, 59, 59, tzinfo=timezone.utc)
    assert grants.token_window(last_second) == (issued, expires)
    assert expires - last_second > timedelta(hours=12)
    assert grants.token_window(last_second + timedelta(seconds=1))[0] == issued + timedelta(hours=12)


def test_naive_now_is_utc():
    assert grants.token_window(NOW.replace(tzinfo=None)) == grants.token_window(NOW)


# ----------------------------------------------------------------------------- the Secret
def test_secret_holds_a_verifiable_token_per_backstage_member():
    out = render_children(
        livestream([("alice", "host"), ("bob", "user"), ("x@y", "admin")]), CT, OperatorConfig(), CREDS, now=NOW
    )
    secret = tokens_secret(out)
    assert secret["metadata"]["name"] == "show-member-tokens" == out.member_tokens_secret
    data = decoded(secret)
    assert set(data) == {"alice", grants.secret_key("x@y")}
    for user, key in (("alice", "alice"), ("x@y", grants.secret_key("x@y"))):
        got = tokens.verify(CREDS.playback_secret, data[key], "media/show", NOW)
        assert got.user_id == user
        assert got.expires_at == int(grants.token_window(NOW)[1].timestamp())
        assert claims(data[key])["iat"] == int(grants.token_window(NOW)[0].timestamp())
    with pytest.raises(tokens.TokenError):
        tokens.verify(CREDS.playback_secret, data["alice"], "media/other", NOW)
    with pytest.raises(tokens.TokenError):
        tokens.verify(CREDS.playback_secret, data["alice"], "media/show", grants.token_window(NOW)[1])
    assert secret["metadata"]["annotations"][grants.TOKENS_EXPIRE_ANNOTATION] == "2026-07-15T00:00:00Z"
    assert out.tokens_refresh_at == datetime(2026, 7, 14, 12, 0, tzinfo=timezone.utc)


def test_secret_is_owned_and_labelled_like_every_child():
    out = render_children(livestream([("alice", "host")]), CT, OperatorConfig(), CREDS, now=NOW)
    secret = tokens_secret(out)
    labels = secret["metadata"]["labels"]
    assert child_selector("show").items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == "member-tokens"
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "onair.dev/v1alpha1",
            "kind": "Livestream",
            "name": "show",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert secret["type"] == "Opaque" and "stringData" not in secret


def test_render_is_byte_identical_within_a_bucket_and_changes_in_the_next():
    ls = livestream([("alice", "host"), ("amy", "admin")])

    def dump(now: datetime) -> str:
        return json.dumps(tokens_secret(render_children(ls, CT, OperatorConfig(), CREDS, now=now)), sort_keys=True)

    first = dump(NOW)
    assert dump(NOW + timedelta(hours=2)) == first
    assert dump(datetime(2026, 7, 14, 11, 59, 59, tzinfo=timezone.utc)) == first
    assert dump(datetime(2026, 7, 14, 12, 0, 0, tzinfo=timezone.utc)) != first


def test_removed_members_and_lost_grants_drop_their_tokens():
    config = OperatorConfig()
    both = render_children(livestream([("alice", "host"), ("amy", "admin")]), CT, config, CREDS, now=NOW)
    assert set(decoded(tokens_secret(both))) == {"alice", "amy"}
    removed = render_children(livestream([("amy", "admin")]), CT, config, CREDS, now=NOW)
    assert set(decoded(tokens_secret(removed))) == {"amy"}
    demoted = render_children(livestream([("alice", "user"), ("amy", "admin")]), CT, config, CREDS, now=NOW)
    assert set(decoded(tokens_secret(demoted))) == {"amy"}
    host_without_backstage = calltype({"host": ["send-audio"], "admin": ["join-backstage"]})
    regranted = render_children(
        livestream([("alice", "host"), ("amy", "admin")]), host_without_backstage, config, CREDS, now=NOW
    )
    assert set(decoded(tokens_secret(regranted))) == {"amy"}


def test_no_backstage_member_no_secret():
    for ls in (livestream(), livestream([("bob", "user")])):
        out = render_children(ls, CT, OperatorConfig(), CREDS, now=NOW)
        assert tokens_secret(out) is None and out.member_tokens_secret == "" and out.tokens_refresh_at is None
    # Without a clock (tools rendering configs) nothing time-dependent is rendered.
    out = render_children(livestream([("alice", "host")]), CT, OperatorConfig(), CREDS)
    assert tokens_secret(out) is None and out.members.backstage == ("alice",)


def test_status_names_backstage_members_and_the_secret():
    ls = livestream([("alice", "host"), ("bob", "user"), ("amy", "admin")])
    out = render_children(ls, CT, OperatorConfig(), CREDS, now=NOW)
    lifecycle = desired_lifecycle(LivestreamSpec.model_validate(ls["spec"]), out.effective, NOW)
    status = livestream_status(lifecycle=lifecycle, rendered=out, agents={}, previous=None, generation=1, now=NOW)
    assert status["backstageMembers"] == ["alice", "amy"]
    assert status["memberTokensSecret"] == "show-member-tokens"
    plain = render_children(livestream(), CT, OperatorConfig(), CREDS, now=NOW)
    status = livestream_status(lifecycle=lifecycle, rendered=plain, agents={}, previous=None, generation=1, now=NOW)
    assert "backstageMembers" not in status and "memberTokensSecret" not in status


# ----------------------------------------------------------------------------- re-minting
def test_operator_re_mints_when_the_bucket_ends():
    ls = livestream([("alice", "host")])
    clock = [NOW]
    rt = Runtime(
        OperatorConfig(status_poll_interval_seconds=3600),
        kube=None,
        agent_client=None,  # type: ignore[arg-type]
        clock=lambda: clock[0],
        resync_seconds=10**9,
    )
    state = LivestreamState("media", "show", UID)
    state.rendered = render_children(ls, CT, OperatorConfig(), CREDS, now=NOW)
    state.rendered_generation, state.rendered_calltype, state.applied_at = 1, "None/None", NOW
    assert needs_apply(rt, state, ls) is False
    # The daemon sleeps no longer than until the re-mint instant (an hour-long poll is cut short).
    clock[0] = datetime(2026, 7, 14, 11, 59, 0, tzinfo=timezone.utc)
    assert 60.0 <= _wait_seconds(rt, state) <= 60.1
    clock[0] = datetime(2026, 7, 14, 12, 0, 0, tzinfo=timezone.utc)
    assert needs_apply(rt, state, ls) is True
