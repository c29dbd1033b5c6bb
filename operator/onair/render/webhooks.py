"""Webhook notifications, pure: which events a status change makes, the signed CloudEvent that
carries one, and the retry schedule.

Events come from the difference between the stored status and the one being written, like the
Kubernetes Events (``onair.controller.events``): a restarted operator starts from the stored
status and never announces a transition twice. Each notification is numbered from
``status.webhooks.sequence``, which is written with the same status patch, so the delivery id
(derived from the Livestream's uid and that number) is the same if the operator dies between
queueing a delivery and writing the status, and the receiver can drop the repeat by id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Optional

from onair.api.conditions import (
    BROADCASTING_FAILED,
    READY,
    RECORDING,
    RECORDING_PROBLEMS,
    RECORDING_UPLOAD_FAILING,
    RECORDINGS_UPLOADED,
)
from onair.api.webhooks import CLOUDEVENT_TYPE_PREFIX, GETSTREAM_TYPES
from onair.render.conditions import find_condition

MAX_RETRY_DELAY_SECONDS = 300.0
SIGNATURE_VERSION = "v1"


@dataclass(frozen=True)
class Notification:
    event: str
    data: dict = field(default_factory=dict)


def _became(old: Mapping, new: Mapping, key: str) -> Optional[bool]:
    """True/False when ``key`` turned on/off between the two statuses, None when it did not change."""
    if key not in new or bool(new.get(key)) == bool(old.get(key)):
        return None
    return bool(new[key])


def _recording_key(recording: Mapping) -> Any:
    return recording.get("session") or json.dumps(recording, sort_keys=True)


def notifications(old: Optional[Mapping], new: Optional[Mapping]) -> list[Notification]:
    """What ``old`` → ``new`` (camelCase status dicts) has to tell the webhooks, in order."""
    old, new = old or {}, new or {}
    out: list[Notification] = []
    if new.get("phase") != old.get("phase"):
        if new.get("phase") == "live":
            out.append(Notification("live_started", {"liveSince": new.get("liveSince")}))
        elif new.get("phase") == "ended":
            out.append(Notification("ended", {}))
    broadcasting = _became(old, new, "broadcasting")
    if broadcasting is not None:
        out.append(
            Notification(
                "broadcasting_started" if broadcasting else "broadcasting_stopped",
                {"playback": new.get("playback") or {}},
            )
        )
    old_ready, new_ready = find_condition(old.get("conditions"), READY), find_condition(new.get("conditions"), READY)
    if (
        new_ready
        and new_ready.get("reason") == BROADCASTING_FAILED
        and (old_ready or {}).get("reason") != BROADCASTING_FAILED
    ):
        out.append(Notification("broadcasting_failed", {"message": new_ready.get("message", "")}))
    recording = _became(old, new, "recording")
    if recording:
        out.append(Notification("recording_started", {}))
    elif recording is False:
        out.append(Notification("recording_stopped", {"durationSeconds": new.get("recordingDurationSeconds")}))
    seen = {_recording_key(r) for r in old.get("recordings") or ()}
    for finished in new.get("recordings") or ():
        if _recording_key(finished) not in seen:
            out.append(Notification("recording_ready", {"recording": dict(finished)}))
    old_rec, new_rec = (
        find_condition(old.get("conditions"), RECORDING),
        find_condition(new.get("conditions"), RECORDING),
    )
    if new_rec and new_rec.get("reason") in RECORDING_PROBLEMS and (old_rec or {}).get("reason") != new_rec["reason"]:
        out.append(
            Notification("recording_failed", {"reason": new_rec["reason"], "message": new_rec.get("message", "")})
        )
    # A finished part that cannot be uploaded (refused credentials, missing bucket, store down) is a
    # failed recording for the backend too, on the same transitions as the Warning Event
    # (onair.controller.events): when uploads start failing and when the cause changes.
    old_up = find_condition(old.get("conditions"), RECORDINGS_UPLOADED) or {}
    new_up = find_condition(new.get("conditions"), RECORDINGS_UPLOADED) or {}
    if new_up.get("reason") == RECORDING_UPLOAD_FAILING and (
        old_up.get("reason") != RECORDING_UPLOAD_FAILING or old_up.get("message") != new_up.get("message")
    ):
        out.append(
            Notification("recording_failed", {"reason": RECORDING_UPLOAD_FAILING, "message": new_up.get("message", "")})
        )
    return out


def delivery_id(uid: str, sequence: int, event: str, endpoint: str) -> str:
    return hashlib.sha256(f"{uid}/{sequence}/{event}/{endpoint}".encode()).hexdigest()[:32]


def cloudevent(
    notification: Notification, *, delivery: str, namespace: str, name: str, uid: str, sequence: int, at: datetime
) -> bytes:
    """The request body: one CloudEvents 1.0 event in structured JSON mode."""
    event = {
        "specversion": "1.0",
        "id": delivery,
        "source": f"/apis/onair.dev/v1alpha1/namespaces/{namespace}/livestreams/{name}",
        "type": CLOUDEVENT_TYPE_PREFIX + notification.event,
        "subject": f"{namespace}/{name}",
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {
            "event": notification.event,
            "getstreamType": GETSTREAM_TYPES[notification.event],
            "namespace": namespace,
            "livestream": name,
            "uid": uid,
            "sequence": sequence,
            **notification.data,
        },
    }
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The Onair-Signature header value: the HMAC covers the timestamp, so it cannot be replayed
    with a fresh one."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},{SIGNATURE_VERSION}={digest}"


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance_seconds: float = 300) -> bool:
    """What a receiver does (docs/webhooks.md shows the same in a few lines): the signature matches
    and its timestamp is recent. Then it drops ids it has already seen."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(
        signature(secret, timestamp, body), f"t={timestamp},{SIGNATURE_VERSION}={fields.get(SIGNATURE_VERSION, '')}"
    )


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 1, 2, 4, ... capped at 5 min."""
    return min(MAX_RETRY_DELAY_SECONDS, 2.0 ** max(0, attempts - 1))
