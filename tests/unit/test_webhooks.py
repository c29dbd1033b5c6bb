"""Webhook notifications: which status changes make which events, the signed CloudEvent, the
retry schedule, and what is queued per endpoint."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from onair.api.conditions import (
    BROADCASTING_FAILED,
    RECORDING_FAILED,
    RECORDING_UPLOAD_FAILING,
    RECORDING_UPLOAD_PENDING,
    RECORDINGS_UPLOADED,
)
from onair.api.settings import CallSettings
from onair.api.webhooks import EVENT_NAMES, GETSTREAM_TYPES, WebhookEndpoint
from onair.controller.webhooks import Delivery, queue_for
from onair.render import webhooks as wh
from onair.render.effective import effective_settings

NOW = datetime(2026, 12, 6, 4, 0, tzinfo=timezone.utc)


def events(old, new):
    return [n.event for n in wh.notifications(old, new)]


def test_every_event_has_a_getstream_name():
    assert set(EVENT_NAMES) == set(GETSTREAM_TYPES)


def test_going_live_and_ending():
    assert events({"phase": "backstage"}, {"phase": "live", "liveSince": "t"}) == ["live_started"]
    assert wh.notifications({"phase": "backstage"}, {"phase": "live", "liveSince": "t"})[0].data == {"liveSince": "t"}
    assert events({"phase": "live"}, {"phase": "ended"}) == ["ended"]
    assert events({"phase": "live"}, {"phase": "backstage"}) == []
    assert events({"phase": "live"}, {"phase": "live"}) == []


def test_broadcasting_and_its_failure_once():
    assert events({"broadcasting": False}, {"broadcasting": True}) == ["broadcasting_started"]
    assert events({"broadcasting": True}, {"broadcasting": False}) == ["broadcasting_stopped"]
    # Absent before (a new Livestream) and false now is no stop.
    assert events({}, {"broadcasting": False}) == []
    failed = {"conditions": [{"type": "Ready", "status": "False", "reason": BROADCASTING_FAILED, "message": "m"}]}
    assert events({}, failed) == ["broadcasting_failed"]
    assert events(failed, failed) == []


def test_recordings_started_stopped_ready_failed():
    assert events({"recording": False}, {"recording": True}) == ["recording_started"]
    done = {"session": "ns_show_1", "parts": [{"name": "a.mp4", "bytes": 10}]}
    assert events({"recording": True}, {"recording": False, "recordings": [done]}) == [
        "recording_stopped",
        "recording_ready",
    ]
    # A recording already announced is not announced again; a new one is.
    other = {"session": "ns_show_2", "parts": []}
    assert events({"recordings": [done]}, {"recordings": [done, other]}) == ["recording_ready"]
    failing = {"conditions": [{"type": "Recording", "status": "False", "reason": RECORDING_FAILED, "message": "disk"}]}
    assert events({}, failing) == ["recording_failed"]
    assert events(failing, failing) == []


def test_an_upload_that_keeps_failing_is_a_failed_recording_once_per_cause():
    def uploads(reason: str, message: str) -> dict:
        return {
            "conditions": [
                {
                    "type": RECORDINGS_UPLOADED,
                    "status": "False" if reason != RECORDINGS_UPLOADED else "True",
                    "reason": reason,
                    "message": message,
                }
            ]
        }

    refused = uploads(RECORDING_UPLOAD_FAILING, "the store refused the credentials")
    assert wh.notifications(uploads(RECORDING_UPLOAD_PENDING, "1 file"), refused) == [
        wh.Notification(
            "recording_failed", {"reason": RECORDING_UPLOAD_FAILING, "message": "the store refused the credentials"}
        )
    ]
    assert events(refused, refused) == [], "retries of the same failure are not announced again"
    assert events(refused, uploads(RECORDING_UPLOAD_FAILING, "bucket missing")) == ["recording_failed"]
    assert events(refused, uploads(RECORDINGS_UPLOADED, "every file")) == []
    assert events({}, uploads(RECORDING_UPLOAD_PENDING, "1 file")) == []


def test_signature_verifies_and_refuses_tampering_old_timestamps_and_garbage():
    body = b'{"id":"x"}'
    header = wh.signature(b"k3y", 1_800_000_000, body)
    assert header.startswith("t=1800000000,v1=")
    assert wh.verify(b"k3y", header, body, now=1_800_000_010)
    assert not wh.verify(b"k3y", header, body + b" ", now=1_800_000_010)
    assert not wh.verify(b"other", header, body, now=1_800_000_010)
    assert not wh.verify(b"k3y", header, body, now=1_800_000_000 + 301)
    assert not wh.verify(b"k3y", header.replace("t=1800000000", "t=1800000005"), body, now=1_800_000_010)
    assert not wh.verify(b"k3y", "garbage", body, now=1_800_000_010)


def test_retry_delay_doubles_up_to_five_minutes():
    assert [wh.retry_delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert wh.retry_delay(20) == 300


def test_cloudevent_body():
    note = wh.Notification("live_started", {"liveSince": "2026-12-06T04:00:00Z"})
    body = json.loads(wh.cloudevent(note, delivery="d1", namespace="ns", name="show", uid="u", sequence=3, at=NOW))
    assert body["specversion"] == "1.0" and body["id"] == "d1"
    assert body["type"] == "dev.onair.livestream.live_started"
    assert body["source"] == "/apis/onair.dev/v1alpha1/namespaces/ns/livestreams/show"
    assert body["time"] == "2026-12-06T04:00:00Z"
    assert body["data"] == {
        "event": "live_started",
        "getstreamType": "call.live_started",
        "namespace": "ns",
        "livestream": "show",
        "uid": "u",
        "sequence": 3,
        "liveSince": "2026-12-06T04:00:00Z",
    }


def test_queue_per_endpoint_filter_and_stable_ids():
    endpoints = [
        WebhookEndpoint.model_validate(
            {"name": "all", "url": "https://a.example/hook", "signingSecret": {"name": "s"}}
        ),
        WebhookEndpoint.model_validate(
            {
                "name": "rec",
                "url": "http://b/hook",
                "signingSecret": {"name": "s2", "key": "k"},
                "events": ["recording_ready"],
            }
        ),
    ]
    notes = wh.notifications({"phase": "backstage"}, {"phase": "live", "recordings": [{"session": "x"}]})
    queued = queue_for(endpoints, notes, namespace="ns", name="show", uid="u", first_sequence=5, now=NOW)
    assert [(d.endpoint, d.event, d.sequence) for d in queued] == [
        ("all", "live_started", 5),
        ("all", "recording_ready", 6),
        ("rec", "recording_ready", 6),
    ]
    assert queued[2].secret_name == "s2" and queued[2].secret_key == "k" and queued[0].secret_key == "secret"
    assert queued[0].retry_for == 86400
    again = queue_for(endpoints, notes, namespace="ns", name="show", uid="u", first_sequence=5, now=NOW)
    assert [d.id for d in again] == [d.id for d in queued]  # re-queued after a crash: the same ids
    assert len({d.id for d in queued}) == 3
    assert Delivery.load(queued[0].dump()) == queued[0]


def test_endpoint_validation():
    ok = {"name": "hook", "url": "https://x.example/h", "signingSecret": {"name": "s"}}
    WebhookEndpoint.model_validate(ok)
    for bad in (
        {**ok, "url": "ftp://x/h"},
        {**ok, "url": "https://user:pw@x/h"},
        {**ok, "name": "Bad_Name"},
        {**ok, "retryForSeconds": 60},
        {**ok, "events": ["nope"]},
        {k: v for k, v in ok.items() if k != "signingSecret"},
    ):
        with pytest.raises(ValidationError):
            WebhookEndpoint.model_validate(bad)


def test_livestream_webhooks_replace_the_calltypes():
    calltype = CallSettings.model_validate(
        {"webhooks": [{"name": "a", "url": "http://a/", "signingSecret": {"name": "s"}}]}
    )
    override = CallSettings.model_validate({"webhooks": []})
    assert effective_settings(calltype, None).webhooks[0].name == "a"
    assert effective_settings(calltype, override).webhooks == []


def test_status_webhooks_changes_make_events_once():
    from onair.controller.events import transition_events

    failing = {"webhooks": {"failing": [{"endpoint": "backend", "lastError": "HTTP 503: down"}]}}
    assert [(e.type, e.reason) for e in transition_events({}, failing)] == [("Warning", "WebhookDeliveryFailed")]
    assert "HTTP 503: down" in transition_events({}, failing)[0].message
    assert transition_events(failing, failing) == []
    assert [e.reason for e in transition_events(failing, {"webhooks": {}})] == ["WebhookDeliveryRecovered"]
    gave_up = {
        "webhooks": {
            "abandoned": 1,
            "lastAbandoned": {"endpoint": "backend", "event": "ended", "id": "x", "error": "HTTP 500"},
        }
    }
    [event] = transition_events({}, gave_up)
    assert event.reason == "WebhookDeliveryAbandoned" and "ended" in event.message and "HTTP 500" in event.message
    assert transition_events(gave_up, gave_up) == []
