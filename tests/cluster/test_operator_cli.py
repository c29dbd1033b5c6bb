"""`onair run` as users start it: a process with a kubeconfig, one namespace, stopped by SIGTERM."""

from __future__ import annotations

import secrets

import pytest

from tests.fixtures.operator import onair_run

pytestmark = pytest.mark.cluster


def test_onair_run_reconciles_its_namespace_and_exits_on_sigterm(operator, kube, kubeconfig, namespace, tmp_path):
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct)
    log_path = tmp_path / "operator.log"
    # The in-process operator watches every namespace; two operators must never share one.
    with operator.stopped():
        try:
            with onair_run(kubeconfig, namespace, log_path):
                kube.create_livestream(namespace, "cli", {"callType": ct})
                obj = kube.wait_reconciled(namespace, "cli", timeout=60)
                assert obj["status"]["credentialsSecret"] == "cli-credentials"
                assert ("Deployment", "cli-origin") in kube.children(namespace, "cli")
        finally:
            kube.delete_calltype(ct)
    text = log_path.read_text(errors="replace")
    assert f"namespaces {namespace}" in text
    assert "Traceback" not in text, text[-3000:]
