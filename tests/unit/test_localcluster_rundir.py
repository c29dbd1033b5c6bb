"""Stale run dirs of killed test sessions are reaped; live ones are never touched."""

from __future__ import annotations

import os
import subprocess
import sys

from onair.localcluster.cluster import reap_stale_run_dirs


def test_reaps_only_dirs_of_dead_owners(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    stale, live, foreign = (
        tmp_path / "onair-cluster-stale",
        tmp_path / "onair-cluster-live",
        tmp_path / "onair-cluster-nopid",
    )
    for d in (stale, live, foreign):
        d.mkdir()
    (stale / "owner.pid").write_text(dead)
    (live / "owner.pid").write_text(str(os.getpid()))
    other = tmp_path / "unrelated"
    other.mkdir()
    (other / "owner.pid").write_text(dead)

    assert reap_stale_run_dirs(str(tmp_path)) == [stale]
    assert not stale.exists()
    assert live.exists() and foreign.exists() and other.exists()
