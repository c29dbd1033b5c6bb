"""Ingest refusals -> Warning Events: new ones found by comparing polls, at most one Event per
reason and interval with the refusals in between summed, and a message that says how to fix it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from onair.api import refusals
from onair.api.agent import IngestRefusal
from onair.controller.refusals import RefusalAnnouncer
from onair.render.refusals import RefusalBatch, event, fix

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def entry(
    reason=refusals.WRONG_KEY,
    protocol="rtmp",
    count=1,
    first=0.0,
    last=None,
    address="203.0.113.7",
    message="wrong stream key",
) -> IngestRefusal:
    return IngestRefusal(
        reason=reason,
        protocol=protocol,
        count=count,
        first_at=at(first),
        last_at=at(first if last is None else last),
        last_address=address,
        message=message,
    )


def test_the_first_refusal_is_announced_at_once_and_retries_are_summed_per_interval():
    a = RefusalAnnouncer(interval=60)
    a.observe("main", [entry(count=1)], at(1))
    [first] = a.due(at(1))
    assert (first.reason, first.count, first.since, first.last_address) == (refusals.WRONG_KEY, 1, at(0), "203.0.113.7")
    a.observe("main", [entry(count=1)], at(2))  # the same report again: nothing new
    a.observe("main", [entry(count=4, last=30)], at(31))
    assert a.due(at(31)) == []  # within the interval: held back
    a.observe("main", [entry(count=6, last=50, address="203.0.113.8")], at(51))
    [second] = a.due(at(61))
    assert (second.count, second.since, second.last_at, second.last_address) == (5, at(0), at(50), "203.0.113.8")
    assert a.due(at(200)) == []  # nothing new, no Event


def test_reasons_are_limited_separately_and_protocols_and_slots_are_merged():
    a = RefusalAnnouncer(interval=60)
    a.observe("main", [entry(), entry(reason=refusals.NO_VIDEO, message="no video")], at(1))
    assert sorted(b.reason for b in a.due(at(1))) == [refusals.NO_VIDEO, refusals.WRONG_KEY]
    a.observe("main", [entry(count=2, last=10)], at(11))
    a.observe("backup", [entry(protocol="srt", first=12, message="wrong passphrase")], at(13))
    [batch] = a.due(at(62))
    assert (batch.count, batch.protocols, batch.slots) == (2, ("rtmp", "srt"), ("main", "backup"))
    assert (batch.last_protocol, batch.last_slot, batch.last_message) == ("srt", "backup", "wrong passphrase")


def test_an_operator_restart_announces_only_recent_refusals_and_an_agent_restart_counts_from_zero():
    a = RefusalAnnouncer(interval=60)
    a.observe("main", [entry(count=40, last=100), entry(reason=refusals.BUSY, count=3, last=5)], at(120))
    [batch] = a.due(at(120))  # the busy ones are two minutes old: stale news
    assert (batch.reason, batch.count, batch.since) == (refusals.WRONG_KEY, 40, at(0))
    a.observe("main", [entry(count=2, first=300, last=301)], at(302))  # the agent restarted
    [batch] = a.due(at(302))
    assert (batch.count, batch.since) == (2, at(300))


def test_the_message_says_what_where_and_how_to_fix_it_without_credentials():
    one = RefusalBatch(
        reason=refusals.WRONG_KEY,
        count=1,
        since=at(0),
        protocols=("rtmp",),
        slots=("main",),
        last_protocol="rtmp",
        last_slot="main",
        last_at=at(0),
        last_address="203.0.113.7",
        last_message="wrong stream key",
    )
    reason, message = event(one, "events", "keynote", "keynote-credentials")
    assert reason == "PublishRefusedWrongKey"
    assert message == (
        "1 publish (rtmp) to the main ingest was refused at 2025-01-02T03:04:05Z, from 203.0.113.7: "
        "wrong stream key. Fix: publish with the stream key from Secret keynote-credentials, key "
        "streamKey (rtmpPublishUrl there holds the whole URL)."
    )
    many = RefusalBatch(
        reason=refusals.WRONG_KEY,
        count=7,
        since=at(0),
        protocols=("rtmps", "srt"),
        slots=("backup",),
        last_protocol="srt",
        last_slot="backup",
        last_at=at(9),
        last_address=None,
        last_message="wrong passphrase",
    )
    reason, message = event(many, "events", "keynote", "keynote-credentials")
    assert message.startswith(
        "7 publishes (rtmps, srt) to the backup ingest were refused since 2025-01-02T03:04:05Z; "
        "the last one at 2025-01-02T03:04:14Z, from an unknown address: wrong passphrase. Fix: "
    )
    assert "key streamKey (backupRtmpsPublishUrl there holds" in message
    assert "key srtPassphrase (backupSrtPublishUrl there holds" in message
    unknown = RefusalBatch(
        reason="from_the_future",
        count=1,
        since=at(0),
        protocols=("rtmp",),
        slots=("main",),
        last_protocol="rtmp",
        last_slot="main",
        last_at=at(0),
        last_address="x",
        last_message="x" * 2000,
    )
    reason, message = event(unknown, "events", "keynote", "keynote-credentials")
    assert reason == "PublishRefused" and len(message) == 1000


def test_every_reason_has_an_event_reason_and_a_fix():
    for reason in refusals.REFUSAL_REASONS:
        assert (
            refusals.event_reason(reason).startswith("PublishRefused")
            and refusals.event_reason(reason) != "PublishRefused"
        )
        assert fix(reason, "rtmp", "main", "ns", "ls", "ls-credentials") != "see the ingest pod's log"
    assert "kubectl patch livestream ls -n ns --type merge" in fix(refusals.INACTIVE, "srt", "main", "ns", "ls", "s")
    assert "whipToken" in fix(refusals.WRONG_KEY, "whip", "main", "ns", "ls", "s")
    assert "whipToken" in fix(refusals.NO_KEY, "whip", "main", "ns", "ls", "s")
