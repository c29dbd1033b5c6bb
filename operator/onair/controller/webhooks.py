"""Webhook delivery: at least once, in order per endpoint, surviving operator restarts.

Queue: each Livestream's pending deliveries live in a ConfigMap of its namespace
(``<livestream>-webhook-outbox``), one key per delivery. The reconcile writes them there before
the status patch that makes the transition visible, so a crash in between only means the same
deliveries (same ids, see ``onair.render.webhooks``) are queued again. The outbox is not owned by
the Livestream: an ``ended`` sent just before the Livestream was deleted is still delivered,
and the outbox is deleted once empty.

Delivery: one loop per operator scans the outboxes (at once when the reconcile queued something,
when the first retry falls due, and once a minute as a backstop: the operator is the only writer
of outboxes, so an idle operator costs the API server no periodic listing), POSTs what is due,
removes what was answered 2xx, and reschedules the rest with exponential backoff until the
endpoint's ``retryForSeconds`` has passed. A failing
delivery holds back the later ones of the same endpoint, so receivers see events in order.
Failures show in ``status.webhooks`` (through the Livestream's next status write, which also
makes the Events from its changes: the loop runs outside any object's handler, where kopf
cannot post Events) and in the operator's metrics.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional, Sequence

import aiohttp

from onair.api import webhooks as api
from onair.api.settings import CallSettings
from onair.render import webhooks as render

from . import metrics
from onair.kube import FIELD_MANAGER, KINDS, Kube, KubeError
from .metrics import OperatorMetrics

log = logging.getLogger("onair.controller.webhooks")

CONFIGMAP = KINDS[("v1", "ConfigMap")]
SECRET = KINDS[("v1", "Secret")]
OUTBOX_LABEL = "onair.dev/webhook-outbox-of"
REQUEST_TIMEOUT_SECONDS = 10.0
FAILED_SCAN_RETRY_SECONDS = 2.0
# The longest the loop sleeps: outboxes of an operator that crashed before its wake are found.
SCAN_INTERVAL_SECONDS = 60.0
ERROR_TEXT_LIMIT = 300


def outbox_name(livestream: str) -> str:
    return f"{livestream}-webhook-outbox"


@dataclass(frozen=True)
class Delivery:
    """One queued POST, as stored in the outbox (everything needed to send it, even after the
    Livestream and its settings are gone)."""

    id: str
    endpoint: str
    url: str
    secret_name: str
    secret_key: str
    event: str
    sequence: int
    body: str
    created_at: float
    retry_for: float
    attempts: int = 0
    next_at: float = 0.0
    first_failed_at: Optional[float] = None
    last_error: Optional[str] = None

    def dump(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True)

    @classmethod
    def load(cls, text: str) -> "Delivery":
        return cls(**json.loads(text))


def queue_for(
    endpoints: list[api.WebhookEndpoint],
    notes: list[render.Notification],
    *,
    namespace: str,
    name: str,
    uid: str,
    first_sequence: int,
    now: datetime,
) -> list[Delivery]:
    out = []
    for offset, note in enumerate(notes):
        sequence = first_sequence + offset
        for endpoint in endpoints:
            if not endpoint.wants(note.event):
                continue
            delivery = render.delivery_id(uid, sequence, note.event, endpoint.name)
            body = render.cloudevent(
                note, delivery=delivery, namespace=namespace, name=name, uid=uid, sequence=sequence, at=now
            )
            out.append(
                Delivery(
                    id=delivery,
                    endpoint=endpoint.name,
                    url=endpoint.url,
                    secret_name=endpoint.signing_secret.name,
                    secret_key=endpoint.signing_secret.key or api.DEFAULT_SECRET_KEY,
                    event=note.event,
                    sequence=sequence,
                    body=body.decode(),
                    created_at=now.timestamp(),
                    retry_for=float(endpoint.retry_for_seconds or api.DEFAULT_RETRY_FOR_SECONDS),
                )
            )
    return out


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:ERROR_TEXT_LIMIT]


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class WebhookDeliverer:
    def __init__(
        self,
        kube: Kube,
        metrics: OperatorMetrics,
        *,
        on_delivered: Callable[[str, str], None],
        clock: Callable[[], float] = time.time,
        scan_interval: float = SCAN_INTERVAL_SECONDS,
    ) -> None:
        """``on_delivered(namespace, livestream)``: a delivery of that Livestream ended (delivered or
        abandoned), so its ``status.webhooks`` should be refreshed."""
        self.kube = kube
        self.metrics = metrics
        self.on_delivered = on_delivered
        self.clock = clock
        self.scan_interval = scan_interval
        self._summaries: dict[tuple[str, str], dict] = {}
        self._abandoned: dict[tuple[str, str], list[dict]] = {}
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._namespaces: tuple[str, ...] = ()

    # ---------------------------------------------------------------- seen by the reconcile
    async def enqueue(
        self,
        namespace: str,
        name: str,
        uid: str,
        effective: Optional[CallSettings],
        stored: Mapping,
        new: dict,
        *,
        now: datetime,
    ) -> None:
        """Queue what ``stored`` → ``new`` tells the Livestream's webhooks, and put
        ``status.webhooks`` (sequence, pending, failing) into ``new``. Raises KubeError when the
        outbox cannot be written: the status is then not written either, and the next reconcile
        tries both again."""
        endpoints = list((effective.webhooks if effective is not None else None) or ())
        previous = stored.get("webhooks") or {}
        sequence = int(previous.get("sequence") or 0)
        if endpoints:
            notes = render.notifications(stored, new)
            queued = queue_for(
                endpoints, notes, namespace=namespace, name=name, uid=uid, first_sequence=sequence + 1, now=now
            )
            if queued:
                await self.write_outbox(namespace, name, queued)
                self.wake()
            sequence += len(notes)
        summary = self.summary(namespace, name)
        abandoned = self.take_abandoned(namespace, name)
        if abandoned:
            summary["abandoned"] = int(previous.get("abandoned") or 0) + len(abandoned)
            summary["lastAbandoned"] = abandoned[-1]
        else:
            summary.update({k: previous[k] for k in ("abandoned", "lastAbandoned") if k in previous})
        if endpoints or previous or summary:
            new["webhooks"] = {"sequence": sequence, **summary}

    async def write_outbox(self, namespace: str, livestream: str, deliveries: list[Delivery]) -> None:
        data = {d.id: d.dump() for d in deliveries}
        try:
            await self.kube.merge_patch(CONFIGMAP, namespace, outbox_name(livestream), {"data": data})
            return
        except KubeError as exc:
            if exc.status != 404:
                raise
        outbox = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": outbox_name(livestream),
                "namespace": namespace,
                "labels": {OUTBOX_LABEL: livestream, "app.kubernetes.io/created-by": FIELD_MANAGER},
            },
            "data": data,
        }
        try:
            await self.kube.create(outbox)
        except KubeError as exc:
            if exc.status != 409:
                raise
            # Created by the delivery loop's view of an older outbox being deleted meanwhile: add to it.
            await self.kube.merge_patch(CONFIGMAP, namespace, outbox_name(livestream), {"data": data})

    def summary(self, namespace: str, livestream: str) -> dict:
        return dict(self._summaries.get((namespace, livestream)) or {})

    def take_abandoned(self, namespace: str, livestream: str) -> list[dict]:
        return self._abandoned.pop((namespace, livestream), [])

    def wake(self) -> None:
        self._wake.set()

    # ---------------------------------------------------------------- the loop
    def start(self, namespaces: Sequence[str] = ()) -> None:
        """``namespaces``: the ones the operator watches (and has RBAC in); none: cluster-wide."""
        self._namespaces = tuple(namespaces)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook deliveries")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": FIELD_MANAGER}) as http:
            while True:
                self._wake.clear()
                sleep = self.scan_interval
                try:
                    next_due = await self.scan(http)
                    if next_due is not None:
                        sleep = min(sleep, max(0.0, next_due - self.clock()))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                    log.warning("webhook delivery scan failed (retrying): %s", exc)
                    sleep = min(sleep, FAILED_SCAN_RETRY_SECONDS)
                try:
                    await asyncio.wait_for(self._wake.wait(), sleep)
                except asyncio.TimeoutError:
                    pass

    async def _outboxes(self) -> list[dict]:
        selector = {OUTBOX_LABEL: None}  # any outbox
        namespaces = self._namespaces
        if not namespaces:
            return await self.kube.list(CONFIGMAP, None, selector)
        found: list[dict] = []
        for namespace in namespaces:
            found += await self.kube.list(CONFIGMAP, namespace, selector)
        return found

    async def scan(self, http: aiohttp.ClientSession) -> Optional[float]:
        """Deliver what is due; when the next delivery left falls due (None: nothing is left)."""
        summaries: dict[tuple[str, str], dict] = {}
        next_due: Optional[float] = None
        for outbox in await self._outboxes():
            meta = outbox["metadata"]
            key = (meta["namespace"], meta["labels"][OUTBOX_LABEL])
            summaries[key], due = await self._drain(http, outbox)
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        changed = {k for k in set(summaries) | set(self._summaries) if summaries.get(k) != self._summaries.get(k)}
        self._summaries = {k: v for k, v in summaries.items() if v}
        for namespace, livestream in changed:
            self.on_delivered(namespace, livestream)
        return next_due

    async def _drain(self, http: aiohttp.ClientSession, outbox: dict) -> tuple[dict, Optional[float]]:
        """Deliver what is due in one outbox: its summary for ``status.webhooks``, and when the
        first delivery it still holds falls due."""
        meta = outbox["metadata"]
        namespace, livestream = meta["namespace"], meta["labels"][OUTBOX_LABEL]
        queued: list[Delivery] = []
        changes: dict[str, Optional[str]] = {}
        for key, text in (outbox.get("data") or {}).items():
            try:
                queued.append(Delivery.load(text))
            except (TypeError, ValueError) as exc:
                log.warning("dropping unreadable webhook delivery %s in %s/%s: %s", key, namespace, meta["name"], exc)
                changes[key] = None
        by_endpoint: dict[str, list[Delivery]] = {}
        for delivery in sorted(queued, key=lambda d: (d.sequence, d.created_at, d.id)):
            by_endpoint.setdefault(delivery.endpoint, []).append(delivery)
        failing = []
        pending = 0
        next_due: Optional[float] = None
        for endpoint, deliveries in sorted(by_endpoint.items()):
            for delivery in deliveries:
                now = self.clock()
                if delivery.next_at > now:
                    break  # later ones wait: receivers see events in order
                outcome = await self._attempt(http, namespace, livestream, delivery, now)
                if outcome is None:
                    changes[delivery.id] = None
                    continue
                if outcome.attempts == 0:  # abandoned
                    changes[delivery.id] = None
                    continue
                changes[delivery.id] = outcome.dump()
                deliveries[deliveries.index(delivery)] = outcome
                break
            left = [d for d in deliveries if changes.get(d.id, "") is not None]
            pending += len(left)
            head = left[0] if left else None
            if head is not None and (next_due is None or head.next_at < next_due):
                next_due = head.next_at
            if head is not None and head.last_error:
                failing.append(
                    {
                        "endpoint": endpoint,
                        "since": _rfc3339(head.first_failed_at or head.created_at),
                        "attempts": head.attempts,
                        "lastError": head.last_error,
                        "nextAttemptAt": _rfc3339(head.next_at),
                    }
                )
        await self._save(namespace, meta["name"], outbox, changes)
        summary: dict[str, Any] = {}
        if pending:
            summary["pending"] = pending
        if failing:
            summary["failing"] = failing
        return summary, next_due

    async def _save(self, namespace: str, name: str, outbox: dict, changes: dict[str, Optional[str]]) -> None:
        if changes:
            outbox = await self.kube.merge_patch(CONFIGMAP, namespace, name, {"data": changes})
        if not outbox.get("data"):
            # Only the version we saw empty: a delivery queued meanwhile keeps the outbox.
            await self.kube.delete(CONFIGMAP, namespace, name, resource_version=outbox["metadata"]["resourceVersion"])

    async def _secret(self, namespace: str, delivery: Delivery) -> bytes:
        secret = await self.kube.get(SECRET, namespace, delivery.secret_name)
        if secret is None:
            raise LookupError(
                f"Secret {delivery.secret_name} (the signing secret of webhook {delivery.endpoint}) "
                f"does not exist in namespace {namespace}: create it with key {delivery.secret_key}"
            )
        value = (secret.get("data") or {}).get(delivery.secret_key)
        if not value:
            raise LookupError(
                f"Secret {delivery.secret_name} has no key {delivery.secret_key} "
                f"(the signing secret of webhook {delivery.endpoint})"
            )
        return base64.b64decode(value)

    async def _attempt(
        self, http: aiohttp.ClientSession, namespace: str, livestream: str, delivery: Delivery, now: float
    ) -> Optional[Delivery]:
        """None when delivered; the delivery with attempts=0 when given up; else the rescheduled one."""
        attempt = delivery.attempts + 1
        try:
            secret = await self._secret(namespace, delivery)
            body = delivery.body.encode()
            headers = {
                "Content-Type": api.CONTENT_TYPE,
                api.DELIVERY_HEADER: delivery.id,
                api.ATTEMPT_HEADER: str(attempt),
                api.SIGNATURE_HEADER: render.signature(secret, int(now), body),
            }
            async with http.post(delivery.url, data=body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    error = None
                else:
                    error = f"HTTP {resp.status}: {(await resp.text(errors='replace'))[:200].strip()}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is a reason to retry, said in status
            error = _error_text(exc)
        if error is None:
            self.metrics.webhook_deliveries.labels(metrics.DELIVERED).inc()
            log.info(
                "webhook %s: delivered %s of %s/%s (attempt %d)",
                delivery.endpoint,
                delivery.event,
                namespace,
                livestream,
                attempt,
            )
            return None
        first_failed = delivery.first_failed_at or now
        if now - delivery.created_at >= delivery.retry_for:
            self.metrics.webhook_deliveries.labels(metrics.ABANDONED).inc()
            self._abandoned.setdefault((namespace, livestream), []).append(
                {
                    "endpoint": delivery.endpoint,
                    "event": delivery.event,
                    "id": delivery.id,
                    "at": _rfc3339(now),
                    "error": f"{error} (after {attempt} attempts over {int(now - delivery.created_at)}s)",
                }
            )
            log.warning(
                "webhook %s: gave up %s of %s/%s: %s", delivery.endpoint, delivery.event, namespace, livestream, error
            )
            return replace(delivery, attempts=0)
        self.metrics.webhook_deliveries.labels(metrics.DELIVERY_FAILED).inc()
        log.warning(
            "webhook %s: %s of %s/%s failed (attempt %d): %s",
            delivery.endpoint,
            delivery.event,
            namespace,
            livestream,
            attempt,
            error,
        )
        return replace(
            delivery,
            attempts=attempt,
            last_error=error,
            first_failed_at=first_failed,
            next_at=now + render.retry_delay(attempt),
        )
