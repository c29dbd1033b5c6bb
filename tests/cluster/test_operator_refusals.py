"""Publishes the ingest refuses reach the owner as Warning Events on the Livestream, with the
reason and the fix, rate limited per reason: real ingest agents on loopback, real publishers,
the real operator against the local kube-apiserver.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import REFUSAL_EVENT_INTERVAL

pytestmark = [pytest.mark.cluster, pytest.mark.media]

SMALL = dict(width=320, height=180, fps=15)


def events_of(kube, namespace: str, name: str, reason: str) -> list[dict]:
    found = [e for e in kube.events(namespace, name) if e["reason"] == reason]
    return sorted(
        found,
        key=lambda e: (e.get("lastTimestamp") or e.get("eventTime") or "", e["metadata"].get("creationTimestamp", "")),
    )


def wait_events(kube, namespace: str, name: str, reason: str, count: int = 1, timeout: float = 30) -> list[dict]:
    def check():
        found = events_of(kube, namespace, name, reason)
        return found if len(found) >= count else None

    try:
        return wait_for(check, timeout, what=f"{count} {reason} Event(s)")
    except TimeoutError:
        print("events:", [(e["reason"], e["message"]) for e in kube.events(namespace, name)])
        raise


def test_wrong_stream_key_becomes_a_rate_limited_warning_event(
    routes, kube, calltype, namespace, ingest_agent, publishers
):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/keys")
    routes.route(namespace, "keys", "ingest", main)
    kube.create_livestream(namespace, "keys", {"callType": calltype, "phase": "live"})
    kube.wait_reconciled(namespace, "keys")
    wrong = main.rtmp_url.replace(main.stream_key, "not-the-key")

    assert publishers.rtmp(wrong, **SMALL).wait(15) != 0  # the encoder itself only sees an I/O error
    first = wait_events(kube, namespace, "keys", "PublishRefusedWrongKey")[0]
    assert first["type"] == "Warning"
    message = first["message"]
    assert message.startswith("1 publish (rtmp) to the main ingest was refused at ")
    assert "from 127.0.0.1: wrong stream key." in message
    assert "Secret keys-credentials, key streamKey (rtmpPublishUrl there holds the whole URL)" in message
    assert main.stream_key not in message and "not-the-key" not in message

    # An encoder retrying: no Event per attempt, one more with the sum once the interval is over.
    retries = [publishers.rtmp(wrong, **SMALL) for _ in range(3)]
    for pub in retries:
        assert pub.wait(15) != 0
    second = wait_events(
        kube, namespace, "keys", "PublishRefusedWrongKey", count=2, timeout=REFUSAL_EVENT_INTERVAL + 30
    )[1]
    assert re.match(
        r"3 publishes \(rtmp\) to the main ingest were refused since \S+; the last one at \S+, "
        r"from 127\.0\.0\.1: wrong stream key\. Fix: ",
        second["message"],
    ), second["message"]
    time.sleep(REFUSAL_EVENT_INTERVAL / 2)
    assert len(events_of(kube, namespace, "keys", "PublishRefusedWrongKey")) == 2
    assert kube.livestream(namespace, "keys")["status"]["live"] is False


def test_audio_only_publish_is_never_live_and_the_owner_is_told_why(
    routes, kube, calltype, namespace, ingest_agent, publishers
):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/radio")
    routes.route(namespace, "radio", "ingest", main)
    kube.create_livestream(namespace, "radio", {"callType": calltype, "phase": "live"})
    kube.wait_reconciled(namespace, "radio")
    pub = publishers.custom(
        [
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-f",
            "flv",
            main.rtmp_url,
        ]
    )
    lives = []
    deadline = time.monotonic() + 30
    while pub.running and time.monotonic() < deadline:
        lives.append(kube.livestream(namespace, "radio")["status"].get("live"))
        time.sleep(0.3)
    assert not pub.running, "the audio-only publisher was never dropped"
    event = wait_events(kube, namespace, "radio", "PublishRefusedNoVideo")[0]
    assert event["type"] == "Warning"
    assert "1 publish (rtmp) to the main ingest was refused" in event["message"]
    assert "no video arrived" in event["message"] and "Fix: add a video source" in event["message"]
    assert True not in lives
    reasons = kube.event_reasons(namespace, "radio")
    assert "IngestStarted" not in reasons and "IngestStopped" not in reasons, reasons


@pytest.fixture
def backup_calltype(kube):
    import secrets

    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, settings={"ingest": {"backup": True}})
    yield name
    kube.delete_calltype(name)


def test_srt_refusals_on_the_backup_ingest_name_the_backup_credentials(
    routes, kube, backup_calltype, namespace, ingest_agent, publishers
):
    backup = ingest_agent.start(slot="backup", protocols=("srt",), livestream=f"{namespace}/srtb")
    routes.route(namespace, "srtb", "ingest-backup", backup)
    kube.create_livestream(namespace, "srtb", {"callType": backup_calltype, "phase": "live"})
    kube.wait_reconciled(namespace, "srtb")
    pub = publishers.srt(backup.srt_url.replace(backup.srt_passphrase, "wrong-passphrase-123"), **SMALL)
    assert pub.wait(30) != 0
    message = wait_events(kube, namespace, "srtb", "PublishRefusedWrongKey")[0]["message"]
    assert "1 publish (srt) to the backup ingest" in message and "wrong passphrase" in message
    assert "Secret srtb-credentials, key srtPassphrase (backupSrtPublishUrl there holds the whole URL)" in message
    assert backup.srt_passphrase not in message

    # Switched off: the SRT caller is still heard, and told how to switch the stream back on.
    kube.patch_livestream(namespace, "srtb", {"spec": {"active": False}})
    # An empty PUT /desired changes nothing and answers the desired state the operator last sent.
    wait_for(lambda: backup.put_desired()["active"] is False, 30, what="active=false at the agent")
    assert publishers.srt(backup.srt_url, **SMALL).wait(30) != 0
    message = wait_events(kube, namespace, "srtb", "PublishRefusedInactive")[0]["message"]
    assert "the livestream is not active" in message
    assert f"kubectl patch livestream srtb -n {namespace} --type merge" in message
