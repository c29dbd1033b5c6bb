"""The operator's metrics as Prometheus parses them: names, labels, and what each series counts."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from onair.controller.metrics import OperatorMetrics, agent_outcome
from onair.controller.agent_client import AgentReport
from onair.controller.runtime import LivestreamState
from onair.render.resolve import Problem


def samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def state(
    name: str, status: dict | None = None, problem: Problem | None = None, agents: dict | None = None
) -> LivestreamState:
    s = LivestreamState("team", name, f"uid-{name}")
    s.status, s.problem, s.agents = status, problem, agents or {}
    return s


def test_every_series_is_prefixed_and_outcomes_exist_before_the_first_reconcile():
    metrics = OperatorMetrics()
    metrics.watch_livestreams(lambda: [])
    got = samples(metrics)
    assert all(name.startswith("onair_operator_") for name, _ in got)
    for outcome in ("ok", "stalled", "retrying", "failed"):
        assert got[("onair_operator_reconciles_total", (("outcome", outcome),))] == 0
    assert got[("onair_operator_livestreams_live", ())] == 0
    assert got[("onair_operator_livestreams", (("phase", "live"),))] == 0
    for outcome in ("delivered", "failed", "abandoned"):
        assert got[("onair_operator_webhook_deliveries_total", (("outcome", outcome),))] == 0


def test_reconciles_count_by_outcome_and_errors_by_reason():
    metrics = OperatorMetrics()
    metrics.reconciled("ok", 0.01)
    metrics.reconciled("stalled", 0.02, "CallTypeNotFound")
    metrics.reconciled("stalled", 0.02, "CallTypeNotFound")
    metrics.reconciled("retrying", 0.5, "KubernetesAPIUnavailable")
    metrics.kube_request("apply", 0.03)
    got = samples(metrics)
    assert got[("onair_operator_reconciles_total", (("outcome", "ok"),))] == 1
    assert got[("onair_operator_reconciles_total", (("outcome", "stalled"),))] == 2
    assert got[("onair_operator_reconcile_errors_total", (("reason", "CallTypeNotFound"),))] == 2
    assert got[("onair_operator_reconcile_errors_total", (("reason", "KubernetesAPIUnavailable"),))] == 1
    assert ("onair_operator_reconcile_errors_total", (("reason", "ok"),)) not in got
    assert got[("onair_operator_reconcile_duration_seconds_count", ())] == 4
    assert got[("onair_operator_kube_request_duration_seconds_count", (("operation", "apply"),))] == 1
    assert got[("onair_operator_kube_request_duration_seconds_count", (("operation", "status_patch"),))] == 0


def test_agent_poll_outcomes():
    assert agent_outcome(AgentReport("origin", "http://a", True)) == "ok"
    assert agent_outcome(AgentReport("origin", "http://a", False, refused="HTTP 403")) == "refused"
    assert agent_outcome(AgentReport("origin", None, False, error="no address")) == "no_address"
    assert agent_outcome(AgentReport("origin", "http://a", False, error="timeout")) == "unreachable"
    metrics = OperatorMetrics()
    metrics.agents_polled(
        {"ingest": AgentReport("ingest", "http://a", True), "ingest-backup": AgentReport("ingest-backup", None, False)}
    )
    got = samples(metrics)
    assert got[("onair_operator_agent_polls_total", (("outcome", "ok"), ("role", "ingest")))] == 1
    assert got[("onair_operator_agent_polls_total", (("outcome", "no_address"), ("role", "ingest-backup")))] == 1


def test_livestream_gauges_are_read_from_the_operator_state_when_scraped():
    states: list[LivestreamState] = []
    metrics = OperatorMetrics()
    metrics.watch_livestreams(lambda: states)
    assert samples(metrics)[("onair_operator_livestreams", (("phase", "unknown"),))] == 0
    states += [
        state(
            "a",
            {"phase": "live", "live": True},
            agents={
                "origin": AgentReport("origin", "http://a", True),
                "recorder": AgentReport("recorder", "http://b", False, error="timeout"),
            },
        ),
        state("b", {"phase": "backstage", "live": False}),
        state("c", None, Problem("CallTypeNotFound", "no such CallType")),
    ]
    got = samples(metrics)
    assert got[("onair_operator_livestreams", (("phase", "live"),))] == 1
    assert got[("onair_operator_livestreams", (("phase", "backstage"),))] == 1
    assert got[("onair_operator_livestreams", (("phase", "unknown"),))] == 1
    assert got[("onair_operator_livestreams", (("phase", "ended"),))] == 0
    assert got[("onair_operator_livestreams_live", ())] == 1
    assert got[("onair_operator_livestreams_stalled", (("reason", "CallTypeNotFound"),))] == 1
    assert got[("onair_operator_agents_unreachable", (("role", "recorder"),))] == 1
    assert got[("onair_operator_agents_unreachable", (("role", "origin"),))] == 0


def test_two_operators_in_one_process_keep_their_own_series():
    first, second = OperatorMetrics(), OperatorMetrics()
    first.reconciled("ok", 0.01)
    assert samples(second)[("onair_operator_reconciles_total", (("outcome", "ok"),))] == 0
