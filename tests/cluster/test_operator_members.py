"""Members and grants against a real API server: backstage members' tokens, kept in step with
spec.members and the CallType's grants; unknown roles announced; `onair token` for people."""

from __future__ import annotations

import base64
import secrets
import time
from datetime import timedelta

import pytest

from onair import cli, tokens
from onair.render.grants import secret_key
from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import condition

pytestmark = pytest.mark.cluster

HOST = ["join-backstage", "send-audio", "send-video"]
GRANTS = {"host": HOST, "admin": ["join-backstage"], "user": ["join-call", "read-call"]}


@pytest.fixture
def calltype(kube):
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, grants=GRANTS)
    yield name
    kube.delete_calltype(name)


def members(*pairs: tuple[str, str]) -> list[dict]:
    return [{"userId": u, "role": r} for u, r in pairs]


def secret_data(kube, namespace: str, name: str) -> dict[str, str] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        secret = kube.core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def playback_secret(kube, namespace: str, ls: str) -> str:
    return secret_data(kube, namespace, f"{ls}-credentials")["playbackSecret"]


def test_each_host_gets_a_token_that_the_origin_would_accept(operator, kube, calltype, namespace):
    kube.create_livestream(
        namespace,
        "show",
        {"callType": calltype, "members": members(("alice", "host"), ("bob", "user"), ("amy@example.com", "admin"))},
    )
    obj = kube.wait_status(namespace, "show", lambda s: s.get("memberTokensSecret"), what="memberTokensSecret")
    assert obj["status"]["memberTokensSecret"] == "show-member-tokens"
    assert obj["status"]["backstageMembers"] == ["alice", "amy@example.com"]

    children = kube.children(namespace, "show")
    secret = children[("Secret", "show-member-tokens")]
    assert [(r["kind"], r["name"], r["uid"]) for r in secret["metadata"]["ownerReferences"]] == [
        ("Livestream", "show", obj["metadata"]["uid"])
    ]
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "member-tokens"

    data = secret_data(kube, namespace, "show-member-tokens")
    assert set(data) == {"alice", secret_key("amy@example.com")}
    key = playback_secret(kube, namespace, "show")
    now = time.time()
    for user in ("alice", "amy@example.com"):
        claims = tokens.verify(key, data[secret_key(user)], f"{namespace}/show", now)
        assert claims.user_id == user
        assert 12 * 3600 < claims.expires_at - now <= 24 * 3600
    with pytest.raises(tokens.TokenError):
        tokens.verify("another-playback-secret-entirely-not-this-one", data["alice"], f"{namespace}/show", now)
    # No token ever reaches status.
    assert data["alice"] not in repr(kube.livestream(namespace, "show")["status"])


def test_removing_a_member_removes_their_token(operator, kube, calltype, namespace):
    kube.create_livestream(
        namespace, "cut", {"callType": calltype, "members": members(("alice", "host"), ("amy", "admin"))}
    )
    wait_for(
        lambda: set(secret_data(kube, namespace, "cut-member-tokens") or {}) == {"alice", "amy"},
        30,
        what="tokens of alice and amy",
    )
    amy_token = secret_data(kube, namespace, "cut-member-tokens")["amy"]

    kube.patch_livestream(namespace, "cut", {"spec": {"members": members(("amy", "admin"))}})
    wait_for(
        lambda: set(secret_data(kube, namespace, "cut-member-tokens") or {}) == {"amy"},
        30,
        what="alice's token removed",
    )
    assert secret_data(kube, namespace, "cut-member-tokens")["amy"] == amy_token  # same bucket: unchanged
    kube.wait_status(namespace, "cut", lambda s: s.get("backstageMembers") == ["amy"], what="backstageMembers [amy]")

    # Demoted to a role without join-backstage: the last token goes, and with it the Secret.
    kube.patch_livestream(namespace, "cut", {"spec": {"members": members(("amy", "user"))}})
    wait_for(lambda: secret_data(kube, namespace, "cut-member-tokens") is None, 30, what="member-tokens Secret pruned")
    st = kube.wait_status(namespace, "cut", lambda s: "memberTokensSecret" not in s, what="status without tokens")[
        "status"
    ]
    assert "backstageMembers" not in st


def test_a_calltype_taking_join_backstage_from_hosts_removes_their_tokens(operator, kube, calltype, namespace):
    kube.create_livestream(
        namespace, "regrant", {"callType": calltype, "members": members(("alice", "host"), ("amy", "admin"))}
    )
    wait_for(
        lambda: set(secret_data(kube, namespace, "regrant-member-tokens") or {}) == {"alice", "amy"},
        30,
        what="tokens of alice and amy",
    )

    kube.patch_calltype(calltype, {"spec": {"grants": {"host": ["send-audio", "send-video"]}}})
    wait_for(
        lambda: set(secret_data(kube, namespace, "regrant-member-tokens") or {}) == {"amy"},
        30,
        what="hosts' tokens removed after the CallType change",
    )
    kube.wait_status(
        namespace, "regrant", lambda s: s.get("backstageMembers") == ["amy"], what="backstageMembers [amy]"
    )


def test_an_unknown_role_is_announced_and_does_not_stall_the_stream(operator, kube, calltype, namespace):
    kube.create_livestream(
        namespace, "odd", {"callType": calltype, "members": members(("alice", "host"), ("carol", "guest"))}
    )
    obj = kube.wait_reconciled(namespace, "odd")
    wait_for(lambda: "UnknownMemberRole" in kube.event_reasons(namespace, "odd"), 20, what="UnknownMemberRole Event")
    event = next(e for e in kube.events(namespace, "odd") if e["reason"] == "UnknownMemberRole")
    assert event["type"] == "Warning"
    assert "carol (role 'guest')" in event["message"] and "admin, host, user" in event["message"]
    assert condition(obj["status"], "Stalled") is None
    kube.wait_status(namespace, "odd", lambda s: s.get("backstageMembers") == ["alice"], what="alice can watch")

    # Announced once, not on every reconcile.
    kube.patch_livestream(namespace, "odd", {"spec": {"displayName": "touched"}})
    kube.wait_status(namespace, "odd", lambda s: s.get("observedGeneration") == 2, what="generation 2 reconciled")
    time.sleep(2)
    assert [e["reason"] for e in kube.events(namespace, "odd")].count("UnknownMemberRole") == 1
    assert sum(e.get("count") or 1 for e in kube.events(namespace, "odd") if e["reason"] == "UnknownMemberRole") == 1


def test_onair_token_refuses_outsiders_and_mints_for_hosts(operator, kube, calltype, namespace, kubeconfig, capsys):
    kube.create_livestream(
        namespace, "cli", {"callType": calltype, "members": members(("alice", "host"), ("bob", "user"))}
    )
    kube.wait_status(
        namespace,
        "cli",
        lambda s: s.get("credentialsSecret") and (s.get("playback") or {}).get("player"),
        what="credentials and player URL",
    )
    base = ["token", f"{namespace}/cli", "--kubeconfig", kubeconfig]

    assert cli.main(base + ["--user", "mallory"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "'mallory' is not a member" in out.err
    assert cli.main(base + ["--user", "bob"]) == 1
    assert "does not grant join-backstage (roles with it: admin, host)" in capsys.readouterr().err
    assert cli.main(["token", f"{namespace}/nope", "--kubeconfig", kubeconfig, "--user", "alice"]) == 1
    assert f"Livestream {namespace}/nope not found" in capsys.readouterr().err

    assert cli.main(base + ["--user", "alice", "--ttl", "30m"]) == 0
    token = capsys.readouterr().out.strip()
    key = playback_secret(kube, namespace, "cli")
    claims = tokens.verify(key, token, f"{namespace}/cli", time.time())
    assert claims.user_id == "alice"
    assert timedelta(minutes=29) < timedelta(seconds=claims.expires_at - time.time()) <= timedelta(minutes=30)

    assert cli.main(base + ["--user", "alice", "--url"]) == 0
    url = capsys.readouterr().out.strip()
    player = kube.livestream(namespace, "cli")["status"]["playback"]["player"]
    assert url.startswith(player + "?token=")
    tokens.verify(key, url.split("?token=", 1)[1], f"{namespace}/cli", time.time())

    assert cli.main(base + ["--user", "mallory", "--force"]) == 0
    out = capsys.readouterr()
    assert tokens.verify(key, out.out.strip(), f"{namespace}/cli", time.time()).user_id == "mallory"
    assert "--force" in out.err and "not a member" in out.err
