"""Webhook notifications of a Livestream's events: the event names, their GetStream equivalents,
the endpoint model and the header names of the wire format.

The wire format is a CloudEvents 1.0 JSON event (structured mode) so that receivers can use any
CloudEvents SDK, signed the way Stripe signs: ``Onair-Signature: t=<unix seconds>,v1=<hex
HMAC-SHA256 of "<t>.<body>">``. The timestamp is inside the signed text, so a receiver that
refuses old timestamps and remembers the ids it has seen is safe from replays.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .base import ApiModel

WebhookEventName = Literal[
    "live_started",
    "ended",
    "broadcasting_started",
    "broadcasting_stopped",
    "broadcasting_failed",
    "recording_started",
    "recording_stopped",
    "recording_ready",
    "recording_failed",
]
EVENT_NAMES: tuple[str, ...] = WebhookEventName.__args__  # type: ignore[attr-defined]
# CloudEvents `type` of each event: reverse-DNS of the API group, as the spec recommends.
CLOUDEVENT_TYPE_PREFIX = "dev.onair.livestream."
# What a GetStream integration listens for, for the same moment (sent as data.getstreamType).
GETSTREAM_TYPES = {
    "live_started": "call.live_started",
    "ended": "call.ended",
    "broadcasting_started": "call.hls_broadcasting_started",
    "broadcasting_stopped": "call.hls_broadcasting_stopped",
    "broadcasting_failed": "call.hls_broadcasting_failed",
    "recording_started": "call.recording_started",
    "recording_stopped": "call.recording_stopped",
    "recording_ready": "call.recording_ready",
    "recording_failed": "call.recording_failed",
}

# Event reasons of the deliveries, told by status.webhooks changes (onair.controller.events).
WEBHOOK_DELIVERY_FAILED = "WebhookDeliveryFailed"
WEBHOOK_DELIVERY_RECOVERED = "WebhookDeliveryRecovered"
WEBHOOK_DELIVERY_ABANDONED = "WebhookDeliveryAbandoned"

SIGNATURE_HEADER = "Onair-Signature"
DELIVERY_HEADER = "Onair-Delivery"
ATTEMPT_HEADER = "Onair-Delivery-Attempt"
CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_SECRET_KEY = "secret"
DEFAULT_RETRY_FOR_SECONDS = 86400
MIN_RETRY_FOR_SECONDS = 600


class SecretKeyRef(ApiModel):
    name: str = Field(..., min_length=1, max_length=253, description=("Secret in the Livestream's namespace."))
    key: Optional[str] = Field(
        None,
        min_length=1,
        max_length=253,
        description=(f"Key of the Secret holding the signing secret. Default {DEFAULT_SECRET_KEY}."),
    )


class WebhookEndpoint(ApiModel):
    name: str = Field(
        ...,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description=("Names the endpoint in status, Events and metrics."),
    )
    url: str = Field(
        ...,
        max_length=2048,
        pattern=r"^https?://[^/@\s]+(/\S*)?$",
        description=("Where events are POSTed. No user:password@ part: authenticate the sender by the signature."),
    )
    signing_secret: SecretKeyRef = Field(
        ...,
        description=(
            "The HMAC-SHA256 key of the Onair-Signature header. Read at each delivery, so rotating it "
            "takes effect on the next attempt."
        ),
    )
    events: Optional[list[WebhookEventName]] = Field(
        None,
        min_length=1,
        description=("Which events to send. Default: all of them."),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    retry_for_seconds: Optional[int] = Field(
        None,
        ge=MIN_RETRY_FOR_SECONDS,
        le=7 * 86400,
        description=(
            "Keep retrying a failing delivery (exponential backoff up to 5 minutes between attempts) "
            f"this long before giving it up with a Warning Event. Default {DEFAULT_RETRY_FOR_SECONDS} (a day)."
        ),
    )

    def wants(self, event: str) -> bool:
        return self.events is None or event in self.events


class FailingWebhook(ApiModel):
    endpoint: str
    since: str = Field(description="When the delivery now at the head of this endpoint's queue first failed.")
    attempts: int
    last_error: str = Field(description="What the last attempt got: an HTTP status and body, or the connection error.")
    next_attempt_at: str


class AbandonedDelivery(ApiModel):
    endpoint: str
    event: str
    id: str
    at: str = Field(description="When it was given up.")
    error: str = Field(description="What the last attempt got.")


class WebhookStatus(ApiModel):
    sequence: Optional[int] = Field(
        None, description=("Number of the last event queued for the webhooks (data.sequence of its CloudEvent).")
    )
    pending: Optional[int] = Field(None, description="Deliveries queued and not yet answered 2xx.")
    failing: Optional[list[FailingWebhook]] = Field(
        None,
        description=("Endpoints whose next delivery failed at least once, with the error; later events wait for it."),
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    abandoned: Optional[int] = Field(
        None,
        description=("Deliveries given up after their endpoint's retryForSeconds, since the Livestream was created."),
    )
    last_abandoned: Optional[AbandonedDelivery] = None
