"""`onair run` as users start it: a process with a kubeconfig, one namespace, stopped by SIGTERM."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys

import pytest


pytestmark = pytest.mark.cluster


def test_onair_run_reconciles_its_namespace_and_exits_on_sigterm(operator, kube, kubeconfig, namespace, tmp_path):
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct)
    log_path = tmp_path / "operator.log"
    # The in-process operator watches every namespace; two operators must never share one.
    with operator.stopped():
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "onair.cli", "run", "--kubeconfig", kubeconfig,
                                     "--namespace", namespace],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**_env(), "ONAIR_STATUS_POLL_INTERVAL_SECONDS": "1"}, start_new_session=True)
        try:
            kube.create_livestream(namespace, "cli", {"callType": ct})
            obj = kube.wait_reconciled(namespace, "cli", timeout=60)
            assert obj["status"]["credentialsSecret"] == "cli-credentials"
            assert ("Deployment", "cli-origin") in kube.children(namespace, "cli")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            kube.delete_calltype(ct)
    text = log_path.read_text(errors="replace")
    assert f"namespaces {namespace}" in text
    assert "Traceback" not in text, text[-3000:]


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("ONAIR_")}
