"""`onair run` failures a user can cause before any cluster is involved: one line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("ONAIR_")}


def test_onair_run_without_credentials_is_one_line(tmp_path):
    missing = tmp_path / "nope.kubeconfig"
    out = subprocess.run(
        [sys.executable, "-m", "onair.cli", "run", "--kubeconfig", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "KUBERNETES_SERVICE_HOST": ""},
    )
    assert out.returncode == 1
    assert "onair run: cannot find cluster credentials" in out.stderr
    assert "Traceback" not in out.stderr


def test_onair_run_rejects_bad_configuration(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "onair.cli", "run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "ONAIR_STATUS_POLL_INTERVAL_SECONDS": "-1"},
    )
    assert out.returncode == 2
    assert "ONAIR_STATUS_POLL_INTERVAL_SECONDS" in out.stderr and "Traceback" not in out.stderr


def test_info_keeps_kopf_per_object_logs_out_and_verbose_brings_them_back():
    """The chart's logLevel: info (default) must not log a line per watch event and per probe;
    verbose adds kopf's per-object handler logs. Warnings of either logger (a handler that failed)
    always show."""
    import logging

    from onair.controller import runner

    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in runner.PER_OBJECT_LOGGERS})
    try:
        runner.configure_logging()
        for name in runner.PER_OBJECT_LOGGERS:
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
        assert logging.getLogger("onair.controller").isEnabledFor(logging.INFO)

        runner.configure_logging(verbose=True)
        for name in runner.PER_OBJECT_LOGGERS:
            assert logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
