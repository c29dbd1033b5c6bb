"""Kubernetes Events for every transition a user cares about, derived from status changes.

Level-based like the rest of the operator: an Event is the difference between the status that
was stored and the status being written, so a restarted operator (which starts from the stored
status) never repeats one, and a transition is announced exactly when it becomes visible in
``kubectl get``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, cast

import kopf

from onair.api.conditions import (
    ORIGIN_REPLICAS_DOWN,
    ORIGIN_REPLICAS_RECOVERED,
    RECORDING,
    RECORDING_PROBLEMS,
    RECORDING_UPLOAD_FAILING,
    RECORDING_UPLOAD_RECOVERED,
    RECORDINGS_UPLOADED,
)
from onair.api.webhooks import WEBHOOK_DELIVERY_ABANDONED, WEBHOOK_DELIVERY_FAILED, WEBHOOK_DELIVERY_RECOVERED
from onair.render.conditions import find_condition

NORMAL = "Normal"
WARNING = "Warning"


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


def _stalled(status: Mapping[str, Any]) -> Optional[dict]:
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return cond
    return None


def _last_source(status: Mapping[str, Any]) -> Optional[str]:
    # A status stored by an operator that did not know lastActiveSource has only activeSource.
    return status.get("lastActiveSource") or status.get("activeSource")


def _unseen_round_trip(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Both a switch to backup and one to main since the last poll, by the same transcoder
    (counts that went down mean a new transcoder process: nothing to compare)."""
    before, after = old.get("sourceSwitches"), new.get("sourceSwitches")
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return False
    deltas = {source: after.get(source, 0) - before.get(source, 0) for source in ("main", "backup")}
    return all(delta > 0 for delta in deltas.values())


def _by(status: Mapping[str, Any], field: str) -> str:
    """Who publishes: a member with their personal token, or whoever holds the stream's credentials."""
    user = status.get(field)
    return (
        f" from member {user} (personal publish token)"
        if user
        else " (with the stream's own credentials, no personal token)"
    )


def transition_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """Events for the changes from ``old`` to ``new`` (camelCase status dicts); pure."""
    old, new = old or {}, new or {}
    out: list[Event] = []

    def changed(key: str) -> bool:
        return key in new and new.get(key) != old.get(key)

    if changed("phase"):
        phase = new["phase"]
        if phase == "live":
            out.append(Event(NORMAL, "WentLive", "The livestream is live: everyone with the playback URL can watch."))
        elif phase == "backstage" and old.get("phase") == "live":
            out.append(
                Event(
                    NORMAL,
                    "ReturnedToBackstage",
                    "Back in backstage: only members allowed to join backstage can watch.",
                )
            )
        elif phase == "backstage":
            out.append(
                Event(NORMAL, "Backstage", "The livestream is in backstage: hosts can prepare before going live.")
            )
        elif phase == "ended":
            out.append(Event(NORMAL, "Ended", "The livestream has ended: pushes are refused, the DVR stays playable."))

    if changed("originReplicas"):
        out += _origin_replica_events(old.get("originReplicas"), new["originReplicas"])

    if changed("live") and (new["live"] or old.get("live")):
        if new["live"]:
            out.append(Event(NORMAL, "IngestStarted", f"The main ingest is receiving media{_by(new, 'publisher')}."))
        else:
            out.append(Event(WARNING, "IngestStopped", "The main ingest stopped receiving media."))
    elif new.get("live") and old.get("live") and new.get("publisher") != old.get("publisher"):
        out.append(
            Event(
                NORMAL,
                "PublisherChanged",
                f"The main ingest is receiving media{_by(new, 'publisher')} (another publisher than before).",
            )
        )
    if changed("backupLive") and (new["backupLive"] or old.get("backupLive")):
        if new["backupLive"]:
            out.append(
                Event(NORMAL, "BackupLive", f"The backup ingest is receiving media{_by(new, 'backupPublisher')}.")
            )
        else:
            out.append(Event(WARNING, "BackupLost", "The backup ingest stopped receiving media."))
    # Compared by the last source on air, not the current one: a poll that lands while neither
    # source is on air (the switch itself) must not make the failover look like a first start.
    # The very first source (nothing before it) is no failover.
    old_source, new_source = _last_source(old), _last_source(new)
    if old_source and new_source and new_source != old_source:
        if new_source == "backup":
            out.append(Event(WARNING, "FailedOverToBackup", "The transcoder switched to the backup ingest."))
        elif new_source == "main":
            out.append(Event(NORMAL, "ReturnedToMain", "The transcoder is back on the main ingest."))
    elif old_source in ("main", "backup") and old_source == new_source and _unseen_round_trip(old, new):
        # Main -> backup -> main (or the other way) between two polls: the source looks unchanged,
        # the transcoder's switch counts tell.
        failover = Event(
            WARNING,
            "FailedOverToBackup",
            "The transcoder switched to the backup ingest (seen in its switch counts: it happened "
            "between two status polls).",
        )
        back = Event(NORMAL, "ReturnedToMain", "The transcoder is back on the main ingest.")
        out += [failover, back] if new_source == "main" else [back, failover]

    if changed("broadcasting") and (new["broadcasting"] or old.get("broadcasting")):
        if new["broadcasting"]:
            out.append(Event(NORMAL, "BroadcastingStarted", "HLS/DASH broadcasting started."))
        else:
            out.append(Event(NORMAL, "BroadcastingStopped", "HLS/DASH broadcasting stopped."))
    if changed("recording") and (new["recording"] or old.get("recording")):
        if new["recording"]:
            out.append(Event(NORMAL, "RecordingStarted", "Recording started."))
        else:
            out.append(Event(NORMAL, "RecordingStopped", "Recording stopped."))
    if changed("viewersAllowed") and new["viewersAllowed"] and old.get("phase") == new.get("phase") == "backstage":
        out.append(
            Event(NORMAL, "JoinAheadOpened", "Viewers may join: the join-ahead window before startsAt has opened.")
        )
    if changed("dvrClearedAt") and new.get("dvrClearedAt"):
        out.append(Event(NORMAL, "DvrCleared", f"The DVR window was cleared (request of {new['dvrClearedAt']})."))

    # A wanted recording that cannot start (or stopped writing) says why, once per reason.
    old_rec, new_rec = (
        find_condition(old.get("conditions"), RECORDING),
        find_condition(new.get("conditions"), RECORDING),
    )
    if new_rec and new_rec.get("reason") in RECORDING_PROBLEMS and (old_rec or {}).get("reason") != new_rec["reason"]:
        out.append(Event(WARNING, new_rec["reason"], new_rec.get("message", "")))

    out += _upload_events(
        find_condition(old.get("conditions"), RECORDINGS_UPLOADED),
        find_condition(new.get("conditions"), RECORDINGS_UPLOADED),
    )
    out += _webhook_events(old.get("webhooks") or {}, new.get("webhooks") or {})

    old_stalled, new_stalled = _stalled(old), _stalled(new)
    if new_stalled and (not old_stalled or old_stalled.get("reason") != new_stalled.get("reason")):
        reason = (
            "CallTypeMissing"
            if new_stalled.get("reason") == "CallTypeNotFound"
            else new_stalled.get("reason", "Stalled")
        )
        out.append(Event(WARNING, reason, new_stalled.get("message", "")))
    elif old_stalled and not new_stalled:
        if old_stalled.get("reason") == "CallTypeNotFound":
            out.append(Event(NORMAL, "CallTypeFound", "The CallType now exists; reconciling the livestream."))
        else:
            out.append(Event(NORMAL, "Recovered", f"No longer stalled ({old_stalled.get('reason')})."))
    return out


def _origin_replica_events(old: Optional[str], new: str) -> list[Event]:
    """``originReplicas`` ("answering/wanted") lost or regained replicas."""

    def counts(value: Optional[str]) -> Optional[tuple[int, int]]:
        try:
            up, wanted = (value or "").split("/")
            return int(up), int(wanted)
        except ValueError:
            return None

    before, after = counts(old), counts(new)
    if after is None:
        return []
    up, wanted = after
    if up < wanted and (before is None or up < before[0] or before[0] >= before[1]):
        return [
            Event(
                WARNING,
                ORIGIN_REPLICAS_DOWN,
                f"{wanted - up} of {wanted} origin replicas do not answer; "
                + (
                    "the others keep serving viewers. A replica that comes back copies a peer's DVR first."
                    if up
                    else "no replica serves viewers."
                ),
            )
        ]
    if up == wanted and before is not None and before[0] < before[1]:
        return [Event(NORMAL, ORIGIN_REPLICAS_RECOVERED, f"All {wanted} origin replicas answer again.")]
    return []


def _upload_events(old: Optional[dict], new: Optional[dict]) -> list[Event]:
    """A Warning when recording uploads start failing or fail for another cause (the message names the
    cause and stays the same while it does), a Normal one when they work again."""
    old, new = old or {}, new or {}
    was_failing = old.get("reason") == RECORDING_UPLOAD_FAILING
    failing = new.get("reason") == RECORDING_UPLOAD_FAILING
    if failing and (not was_failing or old.get("message") != new.get("message")):
        return [Event(WARNING, RECORDING_UPLOAD_FAILING, new.get("message", "")[:1000])]
    if was_failing and new and not failing:
        return [
            Event(NORMAL, RECORDING_UPLOAD_RECOVERED, f"Recording uploads work again: {new.get('message', '')}"[:1000])
        ]
    return []


def _webhook_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    out = []
    was_failing = {f["endpoint"]: f for f in old.get("failing") or ()}
    failing = {f["endpoint"]: f for f in new.get("failing") or ()}
    for endpoint, f in failing.items():
        if endpoint not in was_failing:
            out.append(
                Event(
                    WARNING,
                    WEBHOOK_DELIVERY_FAILED,
                    (
                        f"Webhook {endpoint} did not accept a delivery: {f.get('lastError')}. Retrying with backoff "
                        "(status.webhooks.failing); later events wait for it."
                    )[:1000],
                )
            )
    for endpoint in was_failing:
        if endpoint not in failing:
            out.append(Event(NORMAL, WEBHOOK_DELIVERY_RECOVERED, f"Webhook {endpoint} accepts deliveries again."))
    if (new.get("abandoned") or 0) > (old.get("abandoned") or 0):
        last = new.get("lastAbandoned") or {}
        out.append(
            Event(
                WARNING,
                WEBHOOK_DELIVERY_ABANDONED,
                (
                    f"Gave up delivering {last.get('event')} (id {last.get('id')}) to webhook {last.get('endpoint')}: "
                    f"{last.get('error')}"
                )[:1000],
            )
        )
    return out


def _queue(body: Mapping[str, Any], event: Event) -> None:
    # kopf.event reads only apiVersion, kind and metadata of the object (its object reference), so
    # any manifest will do; it is typed for kopf's own Body view, which handlers pass through.
    kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message)


def post(body: Mapping[str, Any], events: list[Event]) -> None:
    """Queue Events for ``body`` (posted in the background by kopf, retried on API errors)."""
    for event in events:
        _queue(body, event)


def warn(body: Mapping[str, Any], reason: str, message: str) -> None:
    _queue(body, Event(WARNING, reason, message))


def normal(body: Mapping[str, Any], reason: str, message: str) -> None:
    _queue(body, Event(NORMAL, reason, message))
