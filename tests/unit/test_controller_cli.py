"""`onair run` failures a user can cause before any cluster is involved: one line, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("ONAIR_")}


def test_onair_run_without_credentials_is_one_line(tmp_path):
    missing = tmp_path / "nope.kubeconfig"
    out = subprocess.run([sys.executable, "-m", "onair.cli", "run", "--kubeconfig", str(missing)],
                         capture_output=True, text=True, timeout=60, env={**_env(), "KUBERNETES_SERVICE_HOST": ""})
    assert out.returncode == 1
    assert "onair run: cannot find cluster credentials" in out.stderr
    assert "Traceback" not in out.stderr


def test_onair_run_rejects_bad_configuration(tmp_path):
    out = subprocess.run([sys.executable, "-m", "onair.cli", "run"], capture_output=True, text=True, timeout=60,
                         env={**_env(), "ONAIR_STATUS_POLL_INTERVAL_SECONDS": "-1"})
    assert out.returncode == 2
    assert "ONAIR_STATUS_POLL_INTERVAL_SECONDS" in out.stderr and "Traceback" not in out.stderr
