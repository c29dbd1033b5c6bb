"""Personal publish tokens end to end: `onair token --publish` mints one from the Livestream's
Secret, a real ingest agent accepts it as the RTMP stream key, the Livestream's status and Event
name the member, and removing the member (a spec patch on the real kube-apiserver, the
in-process operator) revokes the token at the ingest at once, with a Warning Event saying why.
"""

from __future__ import annotations

import secrets

import pytest

from onair import cli
from tests.cluster.test_operator_refusals import events_of, wait_events
from tests.fixtures.cluster import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.media]

SMALL = dict(width=320, height=180, fps=15)
GRANTS = {"host": ["join-backstage", "send-audio", "send-video"], "user": ["join-call"]}


@pytest.fixture
def calltype(kube):
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, grants=GRANTS)
    yield name
    kube.delete_calltype(name)


def mint(kubeconfig, capsys, target, user, *extra) -> tuple[int, str, str]:
    code = cli.main(["token", target, "--kubeconfig", kubeconfig, "--user", user, "--publish", *extra])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err


def test_removing_the_member_revokes_their_publish_token_at_the_ingest(
    routes, kube, calltype, namespace, kubeconfig, ingest_agent, publishers, capsys
):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/show")
    routes.route(namespace, "show", "ingest", main)
    kube.create_livestream(
        namespace,
        "show",
        {
            "callType": calltype,
            "phase": "live",
            "members": [{"userId": "alice", "role": "host"}, {"userId": "bob", "role": "user"}],
        },
    )
    kube.wait_reconciled(namespace, "show")
    wait_for(lambda: routes.mounted(namespace, "show", "ingest"), 30, what="the ingest's Secret files mounted")

    code, _, err = mint(kubeconfig, capsys, f"{namespace}/show", "bob")
    assert code == 1 and "does not grant send-audio and send-video" in err
    code, token, err = mint(kubeconfig, capsys, f"{namespace}/show", "alice", "--ttl", "1h")
    assert code == 0, err
    code, url, err = mint(kubeconfig, capsys, f"{namespace}/show", "alice", "--url")
    assert code == 0 and url.startswith("rtmp://") and "/live/" in url, (url, err)
    code, url, err = mint(kubeconfig, capsys, f"{namespace}/show", "alice", "--srt")
    assert code == 0 and url.startswith("srt://") and "streamid=publish:" in url and "passphrase=" in url, (url, err)

    # The operator PUTs the members to the agent: alice publishes with her own token.
    wait_for(
        lambda: [m["userId"] for m in main.put_desired().get("members") or []] == ["alice", "bob"],
        30,
        what="the members at the ingest",
    )
    pub = publishers.rtmp(main.rtmp_url_with_key(token), **SMALL)
    st = kube.wait_status(
        namespace, "show", lambda s: s.get("live") and s.get("publisher") == "alice", what="live, published by alice"
    )["status"]
    assert token not in repr(st)
    started = wait_events(kube, namespace, "show", "IngestStarted")[0]
    assert "from member alice (personal publish token)" in started["message"]

    # Remove her: the live publisher is dropped and the (unexpired) token is refused from now on.
    kube.patch_livestream(namespace, "show", {"spec": {"members": [{"userId": "bob", "role": "user"}]}})
    assert pub.wait(30) is not None
    kube.wait_status(
        namespace, "show", lambda s: s.get("live") is False and "publisher" not in s, what="not live any more"
    )
    again = publishers.rtmp(main.rtmp_url_with_key(token), **SMALL)
    assert again.wait(15) != 0
    messages = [e["message"] for e in wait_events(kube, namespace, "show", "PublishRefusedNotMember")]
    assert any(
        "alice was removed from the livestream's members" in m or "alice is not a member of the livestream" in m
        for m in messages
    ), messages
    assert all(token not in m for m in messages)
    assert any("Fix: add the user to spec.members" in m for m in messages), messages
    main.wait_log("refused rtmp publish from 127.0.0.1: alice is not a member of the livestream")

    # The stream key keeps working for everyone else, and the Event says no member published.
    publishers.rtmp(main.rtmp_url, **SMALL)
    kube.wait_status(namespace, "show", lambda s: s.get("live") and "publisher" not in s, what="live with the key")
    wait_for(lambda: len(events_of(kube, namespace, "show", "IngestStarted")) >= 2, 30, what="a second IngestStarted")
    assert "no personal token" in events_of(kube, namespace, "show", "IngestStarted")[-1]["message"]
