"""The ingest's Prometheus metrics: what a slot receives, who publishes, and every publish,
read, refusal and drop by outcome."""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry, livestream: str, slot: str) -> None:
        labels = {"livestream": livestream, "slot": slot}
        self.labels = labels
        self.receiving = Gauge(
            "onair_ingest_receiving", "1 while media is arriving on this slot", list(labels), registry=registry
        ).labels(**labels)
        self.bitrate = Gauge(
            "onair_ingest_bitrate_kbps", "incoming bitrate over the last seconds", list(labels), registry=registry
        ).labels(**labels)
        self.publishes = Counter(
            "onair_ingest_publishes",
            "publish attempts by protocol and outcome",
            [*labels, "protocol", "outcome"],
            registry=registry,
        )
        self.plays = Counter(
            "onair_ingest_plays",
            "internal read attempts (nginx-rtmp plays) by outcome",
            [*labels, "outcome"],
            registry=registry,
        )
        self.drops = Counter(
            "onair_ingest_publisher_drops",
            "live publishers the ingest dropped, by reason",
            [*labels, "reason"],
            registry=registry,
        )
        self.refusals = Counter(
            "onair_ingest_refusals",
            "publishes refused or dropped, by reason and protocol",
            [*labels, "reason", "protocol"],
            registry=registry,
        )
        self.publisher = Gauge(
            "onair_ingest_publisher",
            "1 for who publishes now: user is the member of a "
            "personal publish token, empty for the stream key, SRT passphrase or WHIP token",
            [*labels, "protocol", "user"],
            registry=registry,
        )
        self.member_publishes = Counter(
            "onair_ingest_member_publishes",
            "publish attempts with a personal publish token whose signature held, by member and outcome",
            [*labels, "user", "outcome"],
            registry=registry,
        )
        self._publisher_labels: Optional[tuple[str, str]] = None

    def count(self, protocol: Optional[str], outcome: str, user_id: Optional[str] = None) -> None:
        self.publishes.labels(**self.labels, protocol=protocol or "unknown", outcome=outcome).inc()
        if user_id:
            self.member_publishes.labels(**self.labels, user=user_id, outcome=outcome).inc()

    def show_publisher(self, protocol: Optional[str], user_id: Optional[str]) -> None:
        wanted = (protocol, user_id or "") if protocol else None
        if wanted == self._publisher_labels:
            return
        if self._publisher_labels is not None:
            self.publisher.remove(*self.labels.values(), *self._publisher_labels)
        if wanted is not None:
            self.publisher.labels(**self.labels, protocol=wanted[0], user=wanted[1]).set(1)
        self._publisher_labels = wanted
