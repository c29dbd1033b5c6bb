"""The operator's own /metrics, scraped from a running `onair run` as Prometheus would.

No kubelet here, so the media pods never run: the agents have no address, which is exactly the
"agent polls failing" series a platform team alerts on.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.cluster import wait_for
from tests.fixtures.media import free_port
from tests.fixtures.operator import env_without_onair, onair_run, onair_run_argv

pytestmark = pytest.mark.cluster


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_running_operator_serves_its_metrics(operator, kube, kubeconfig, namespace, tmp_path):
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct)
    port = free_port()
    log_path = tmp_path / "operator.log"
    # The in-process operator watches every namespace; two operators must never share one.
    with operator.stopped():
        try:
            with onair_run(kubeconfig, namespace, log_path, env={"ONAIR_METRICS_PORT": str(port)}):
                kube.create_livestream(namespace, "show", {"callType": ct})
                kube.create_livestream(namespace, "orphan", {"callType": "no-such-calltype"})
                show = kube.wait_reconciled(namespace, "show", timeout=60)
                kube.wait_reconciled(namespace, "orphan", timeout=60)
                # A few status polls of the agents (which have no pod, so no address).
                samples = wait_for(
                    lambda: (
                        (s := scrape(port))
                        and value(s, "onair_operator_agent_polls_total", role="origin", outcome="no_address") >= 2
                        and s
                    ),
                    30,
                    what="agent polls counted",
                )

                assert value(samples, "onair_operator_build_info", version=__import__("onair").__version__) == 1
                assert value(samples, "onair_operator_reconciles_total", outcome="ok") >= 1
                assert value(samples, "onair_operator_reconciles_total", outcome="stalled") >= 1
                assert value(samples, "onair_operator_reconcile_errors_total", reason="CallTypeNotFound") >= 1
                assert value(samples, "onair_operator_livestreams_stalled", reason="CallTypeNotFound") == 1
                assert value(samples, "onair_operator_reconcile_duration_seconds_count") >= 2
                # Every Deployment and Service of "show" went through a server-side apply, and both statuses
                # were patched.
                applied = [k for k in kube.children(namespace, "show") if k[0] in ("Deployment", "Service")]
                assert len(applied) >= 6  # four roles, two Services
                assert value(samples, "onair_operator_kube_request_duration_seconds_count", operation="apply") >= len(
                    applied
                )
                assert (
                    value(samples, "onair_operator_kube_request_duration_seconds_count", operation="status_patch") >= 2
                )
                by_phase = {
                    dict(labels)["phase"]: v
                    for (name, labels), v in samples.items()
                    if name == "onair_operator_livestreams"
                }
                assert set(by_phase) >= {"backstage", "live", "ended", "unknown"}
                assert sum(by_phase.values()) == 2
                assert by_phase[show["status"]["phase"]] >= 1
                assert value(samples, "onair_operator_livestreams_live") == 0
                assert value(samples, "onair_operator_agents_unreachable", role="origin") == 1
                assert value(samples, "onair_operator_agent_polls_total", role="origin", outcome="ok") == 0
        finally:
            kube.delete_calltype(ct)
    text = log_path.read_text(errors="replace")
    assert f"serving the operator's metrics on http://0.0.0.0:{port}/metrics" in text
    assert "Traceback" not in text, text[-3000:]


def test_a_taken_metrics_port_stops_onair_run_with_what_to_do(kubeconfig):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            onair_run_argv(kubeconfig, f"unused-{secrets.token_hex(3)}"),
            capture_output=True,
            text=True,
            timeout=60,
            env={**env_without_onair(), "ONAIR_METRICS_PORT": str(port)},
        )
    assert proc.returncode == 1, proc.stderr
    assert f"cannot serve metrics on 0.0.0.0:{port}" in proc.stderr and "ONAIR_METRICS_PORT" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
