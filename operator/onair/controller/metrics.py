"""The operator's own Prometheus metrics: ``GET /metrics`` on ``ONAIR_METRICS_PORT``.

What a platform team alerts on, without one series per Livestream (that truth is in each
Livestream's status and Events, and per-stream media series are on the agents' own /metrics):

* ``onair_operator_reconciles_total{outcome}``: every reconcile pass (apply when needed, then the
  status refresh), ``ok``, ``stalled`` (a problem the user must fix: Stalled condition),
  ``retrying`` (the Kubernetes API failed transiently) or ``failed`` (an operator bug: the log has
  the traceback);
* ``onair_operator_reconcile_errors_total{reason}``: the passes that were not ``ok``, by the
  Stalled condition's reason, ``KubernetesAPIUnavailable`` or the unexpected exception's type;
* ``onair_operator_reconcile_duration_seconds``: one pass, lock held;
* ``onair_operator_kube_request_duration_seconds{operation}``: server-side apply of a child and
  the status patch of a Livestream, from the handler's view (waiting for a free API connection
  included, which is where an overloaded operator shows);
* ``onair_operator_agent_polls_total{role, outcome}``: every poll of an agent's /status, ``ok``,
  ``unreachable``, ``refused`` (the agent refuses the agent token) or ``no_address`` (no running pod);
* ``onair_operator_webhook_deliveries_total{outcome}``: webhook delivery attempts, ``delivered``,
  ``failed`` (retried with backoff) or ``abandoned`` (given up after the endpoint's retryForSeconds);
* gauges read when scraped: ``onair_operator_livestreams{phase}``, ``onair_operator_livestreams_live``,
  ``onair_operator_livestreams_stalled{reason}``, ``onair_operator_agents_unreachable{role}``;
* ``onair_operator_build_info{version}``.

Each operator instance has its own registry, so two operators in one process (tests restarting
the operator) never share or double-register series.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import onair
from onair.kube import APPLY, STATUS_PATCH

from .agent_client import AgentReport


class _Stalled(Protocol):
    @property
    def reason(self) -> str: ...


class LivestreamView(Protocol):
    """What the gauges read of one Livestream the operator keeps in memory (runtime.LivestreamState,
    which builds on these metrics and so cannot be imported here)."""

    @property
    def status(self) -> Optional[Mapping[str, Any]]: ...

    @property
    def problem(self) -> Optional[_Stalled]: ...

    @property
    def agents(self) -> Mapping[str, AgentReport]: ...


log = logging.getLogger("onair.controller")

PREFIX = "onair_operator"
METRICS_PATH = "/metrics"

OK, STALLED, RETRYING, FAILED = "ok", "stalled", "retrying", "failed"
OUTCOMES = (OK, STALLED, RETRYING, FAILED)
KUBE_API_UNAVAILABLE = "KubernetesAPIUnavailable"
DELIVERED, DELIVERY_FAILED, ABANDONED = "delivered", "failed", "abandoned"
AGENT_OK, AGENT_UNREACHABLE, AGENT_REFUSED, AGENT_NO_ADDRESS = "ok", "unreachable", "refused", "no_address"
PHASES = ("backstage", "live", "ended")
NO_STATUS_YET = "unknown"  # a Livestream whose status the operator has not written yet

# Reconciles are API round trips (ms) up to a slow apply of every child (s); API calls likewise.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MetricsPortUnavailable(RuntimeError):
    """The metrics port could not be bound (in use, or not allowed)."""


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            f"{PREFIX}_reconciles",
            "Reconcile passes of Livestreams (apply when needed, then "
            "the status refresh), by outcome: ok, stalled, retrying, failed.",
            ["outcome"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            f"{PREFIX}_reconcile_errors",
            "Reconcile passes that were not ok, by reason: "
            "the Stalled condition's reason, KubernetesAPIUnavailable, or the "
            "unexpected exception's type (an operator bug; see its log).",
            ["reason"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Duration of one reconcile pass of a Livestream.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.kube_request_duration = Histogram(
            f"{PREFIX}_kube_request_duration_seconds",
            "Kubernetes API calls of the reconcile, by operation (apply: "
            "server-side apply of one child; status_patch: a Livestream's "
            "status), waiting for a free API connection included.",
            ["operation"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.agent_polls = Counter(
            f"{PREFIX}_agent_polls",
            "Polls of a media agent's GET /status, by role and "
            "outcome: ok, unreachable, refused (the agent refuses the agent token), "
            "no_address (no running pod).",
            ["role", "outcome"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, failed (retried with backoff), abandoned (given up).",
            ["outcome"],
            registry=r,
        )
        for outcome in (DELIVERED, DELIVERY_FAILED, ABANDONED):
            self.webhook_deliveries.labels(outcome)
        info = Gauge(f"{PREFIX}_build_info", "The running operator's version (always 1).", ["version"], registry=r)
        info.labels(onair.__version__).set(1)
        for outcome in OUTCOMES:
            self.reconciles.labels(outcome)  # every outcome exists at 0: rate() and alerts need no absent()
        for operation in (APPLY, STATUS_PATCH):
            self.kube_request_duration.labels(operation)

    def reconciled(self, outcome: str, seconds: float, reason: Optional[str] = None) -> None:
        self.reconciles.labels(outcome).inc()
        if outcome != OK:
            self.reconcile_errors.labels(reason or outcome).inc()
        self.reconcile_duration.observe(seconds)

    def kube_request(self, operation: str, seconds: float) -> None:
        self.kube_request_duration.labels(operation).observe(seconds)

    def agents_polled(self, reports: Mapping[str, AgentReport]) -> None:
        for role_key, report in reports.items():
            self.agent_polls.labels(role_key, agent_outcome(report)).inc()

    def watch_livestreams(self, states: Callable[[], Iterable[LivestreamView]]) -> None:
        """Export the gauges computed from the operator's in-memory Livestreams when scraped."""
        self.registry.register(LivestreamGauges(states))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def agent_outcome(report: AgentReport) -> str:
    if report.reachable:
        return AGENT_OK
    if report.refused:
        return AGENT_REFUSED
    if report.url is None:
        return AGENT_NO_ADDRESS
    return AGENT_UNREACHABLE


def _counts_by(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> GaugeMetricFamily:
    """A gauge of how many there are per value of ``label``, sorted by value so scrapes read the same."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


class LivestreamGauges(Collector):
    def __init__(self, states: Callable[[], Iterable[LivestreamView]]) -> None:
        self.states = states

    def describe(self) -> list:
        return []  # read only when scraped: nothing to check at registration

    def collect(self) -> Iterable[GaugeMetricFamily]:
        phases: Tally[str] = Tally({phase: 0 for phase in (*PHASES, NO_STATUS_YET)})
        live = 0
        stalled: Tally[str] = Tally()
        unreachable: Tally[str] = Tally()
        for state in list(self.states()):
            status: Mapping[str, Any] = state.status or {}
            phases[status.get("phase") or NO_STATUS_YET] += 1
            live += bool(status.get("live"))
            if state.problem is not None:
                stalled[state.problem.reason] += 1
            for role_key, report in state.agents.items():
                unreachable[role_key] += 0 if report.reachable else 1
        yield _counts_by(
            f"{PREFIX}_livestreams",
            "Livestreams this operator reconciles, by the phase in their status (unknown: no status written yet).",
            "phase",
            phases,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_livestreams_live", "Livestreams whose main ingest receives media (status.live).", value=live
        )
        yield _counts_by(
            f"{PREFIX}_livestreams_stalled",
            "Livestreams the operator cannot converge "
            "until the user changes something, by the Stalled condition's reason.",
            "reason",
            stalled,
        )
        yield _counts_by(
            f"{PREFIX}_agents_unreachable",
            "Media agents that did not answer the last status poll, by role key.",
            "role",
            unreachable,
        )


async def serve(metrics: OperatorMetrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Serve ``GET /metrics`` until the returned runner is cleaned up."""

    async def get_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get(METRICS_PATH, get_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise MetricsPortUnavailable(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); set "
            "ONAIR_METRICS_PORT to a free port, or leave it empty to serve none"
        ) from None
    log.info("serving the operator's metrics on http://%s:%d%s", host, port, METRICS_PATH)
    return runner
