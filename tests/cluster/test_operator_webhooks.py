"""Webhooks on the real kube-apiserver, delivered to a real HTTP receiver that fails on purpose:
signed, retried with backoff, failures visible in status and Events, in order, and nothing lost
or re-sent under a new id across an operator restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import pytest
from kubernetes import client

from tests.fixtures.cluster import wait_for

pytestmark = pytest.mark.cluster

SECRET = b"s3cret-for-signing"


class Receiver:
    """A webhook endpoint: answers 503 while ``failing`` (or for the next ``fail_next``
    requests), else 204; keeps every request it got."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.failing = False
        self.fail_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    fail = receiver.failing or receiver.fail_next > 0
                    receiver.fail_next = max(0, receiver.fail_next - 1)
                    receiver.requests.append(
                        {"headers": dict(self.headers), "body": body, "answered": 503 if fail else 204}
                    )
                self.send_response(503 if fail else 204)
                if fail:
                    self.send_header("Content-Length", "13")
                    self.end_headers()
                    self.wfile.write(b"down for test")
                else:
                    self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/onair"

    def delivered(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests if r["answered"] == 204]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _signature_ok(request: dict) -> bool:
    """The receiver's check, written from the docs rather than with the operator's code."""
    fields = dict(p.split("=", 1) for p in request["headers"]["Onair-Signature"].split(","))
    expected = hmac.new(SECRET, fields["t"].encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) < 300


def _webhooks_status(kube, namespace: str, name: str) -> dict:
    return (kube.livestream(namespace, name).get("status") or {}).get("webhooks") or {}


def _outbox(kube, namespace: str, name: str) -> Optional[dict]:
    try:
        return kube.core.read_namespaced_config_map(f"{name}-webhook-outbox", namespace).data or {}
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def test_webhooks_are_signed_retried_and_survive_an_operator_restart(operator, kube, calltype, namespace, receiver):
    kube.core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="hook-signing"), string_data={"secret": SECRET.decode()}),
    )
    receiver.fail_next = 2
    kube.create_livestream(
        namespace,
        "show",
        {
            "callType": calltype,
            "phase": "backstage",
            "settingsOverride": {
                "webhooks": [
                    {
                        "name": "backend",
                        "url": receiver.url,
                        "signingSecret": {"name": "hook-signing"},
                        "events": ["live_started", "ended"],
                    }
                ]
            },
        },
    )
    kube.wait_reconciled(namespace, "show")
    kube.patch_livestream(namespace, "show", {"spec": {"phase": "live"}})

    # Refused twice: status and a Warning Event say so, with what the receiver answered.
    failing = wait_for(
        lambda: (_webhooks_status(kube, namespace, "show").get("failing") or [None])[0],
        30,
        what="status.webhooks.failing",
    )
    assert failing["endpoint"] == "backend" and "HTTP 503" in failing["lastError"], failing
    assert "down for test" in failing["lastError"]
    wait_for(
        lambda: "WebhookDeliveryFailed" in kube.event_reasons(namespace, "show"),
        30,
        what="a WebhookDeliveryFailed Event",
    )
    # Then delivered, once, signed, with the same id on every attempt.
    [live] = wait_for(lambda: receiver.delivered() or None, 60, what="live_started delivered after the retries")
    assert live["type"] == "dev.onair.livestream.live_started"
    assert live["data"]["getstreamType"] == "call.live_started" and live["data"]["livestream"] == "show"
    attempts = [r for r in receiver.requests if json.loads(r["body"])["id"] == live["id"]]
    assert [r["answered"] for r in attempts] == [503, 503, 204]
    assert [r["headers"]["Onair-Delivery-Attempt"] for r in attempts] == ["1", "2", "3"]
    assert {r["headers"]["Onair-Delivery"] for r in attempts} == {live["id"]}
    assert all(_signature_ok(r) for r in attempts)
    assert attempts[0]["headers"]["Content-Type"] == "application/cloudevents+json"
    wait_for(
        lambda: not _webhooks_status(kube, namespace, "show").get("failing"),
        30,
        what="status.webhooks.failing cleared after the delivery",
    )
    wait_for(
        lambda: "WebhookDeliveryRecovered" in kube.event_reasons(namespace, "show"),
        30,
        what="a WebhookDeliveryRecovered Event",
    )
    wait_for(lambda: _outbox(kube, namespace, "show") is None, 30, what="the empty outbox deleted")

    # The receiver goes down; the stream ends; the operator restarts while the delivery is pending.
    receiver.failing = True
    kube.patch_livestream(namespace, "show", {"spec": {"phase": "ended"}})
    wait_for(
        lambda: _webhooks_status(kube, namespace, "show").get("pending") == 1,
        30,
        what="status.webhooks.pending 1 while the receiver is down",
    )
    wait_for(lambda: len(receiver.requests) >= 4, 30, what="a failed attempt at delivering ended")
    pending_id = json.loads(receiver.requests[-1]["body"])["id"]
    with operator.stopped():
        assert list((_outbox(kube, namespace, "show") or {}).keys()) == [pending_id]
        receiver.failing = False
    ended = wait_for(
        lambda: [e for e in receiver.delivered() if e["type"].endswith(".ended")] or None,
        60,
        what="ended delivered by the restarted operator",
    )
    assert [e["id"] for e in ended] == [pending_id]
    time.sleep(3 * operator.poll_interval)
    # Nothing sent twice: one live_started and one ended were accepted, no other event.
    assert [e["data"]["event"] for e in receiver.delivered()] == ["live_started", "ended"]
    assert [e["data"]["sequence"] for e in receiver.delivered()] == [1, 2]
    wait_for(lambda: not _webhooks_status(kube, namespace, "show").get("pending"), 30, what="nothing pending in status")


def test_a_missing_signing_secret_is_said_in_status(operator, kube, calltype, namespace, receiver):
    kube.create_livestream(
        namespace,
        "nosecret",
        {
            "callType": calltype,
            "phase": "live",
            "settingsOverride": {
                "webhooks": [
                    {"name": "backend", "url": receiver.url, "signingSecret": {"name": "not-created", "key": "k"}}
                ]
            },
        },
    )
    failing = wait_for(
        lambda: (_webhooks_status(kube, namespace, "nosecret").get("failing") or [None])[0],
        30,
        what="status.webhooks.failing naming the missing Secret",
    )
    assert "Secret not-created" in failing["lastError"] and "does not exist" in failing["lastError"], failing
    assert receiver.requests == []
    # Created: the next attempt signs with it and delivers.
    kube.core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="not-created"), string_data={"k": SECRET.decode()})
    )
    wait_for(lambda: receiver.delivered() or None, 60, what="delivered once the Secret exists")
    assert _signature_ok(receiver.requests[0])
