"""A pod's processes: started as the container's command, remembered while they run, and stopped
as the kubelet stops a container.

Stopping is SIGTERM, ``terminationGracePeriodSeconds``, then SIGKILL of the agent and of every
process it started (they run in sessions of their own, so they are found by a tag in their
environment and by the process tree, see ``proctree``), never anything else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

from onair.agent.parentdeath import die_with_parent

from .. import loopback, proctree
from .pods import LocalPod


def agent_env(tag: str) -> dict[str, str]:
    """The environment of a pod's process: tagged, unbuffered, importing the runner's own checkout."""
    env = {**os.environ, proctree.TAG_VAR: tag, "PYTHONUNBUFFERED": "1"}
    # The editable checkout the runner itself imports, whatever the agent's cwd.
    src = str(Path(loopback.__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def spawn(pod: LocalPod, argv: list[str], cwd: Path) -> None:
    """Start the pod's container command, its output appended to the pod's log; raises OSError
    when the command cannot run here."""
    env = {**agent_env(pod.tag), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    # A container's HOSTNAME is its pod's name: how an origin replica tells itself from its peers.
    env["HOSTNAME"] = pod.plan.name
    pod.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(pod.log_path, "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} start #{pod.restarts}: {' '.join(argv)}\n".encode())
        log.flush()
        pod.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd),
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    pod.started_at = time.monotonic()


def track(pods: Iterable[LocalPod]) -> None:
    """Remember each running pod's processes (one /proc pass for all pods)."""
    pods = list(pods)
    if not pods:
        return
    table = proctree.proc_table()
    tags = proctree.tags_of(table)
    for pod in pods:
        pod.known = {pid: proc for pid, proc in pod.known.items() if pid in table and table[pid].start == proc.start}
        pod.known.update(proctree.family(pod.live_pid, pod.tag, table, tags))


def kill_leftovers(pod: LocalPod) -> None:
    """Whatever an exited agent left behind (its nginx still holding the ports), as a container's
    cgroup would take it down."""
    leftovers = {**pod.known, **proctree.family(None, pod.tag)}
    if pod.proc is not None:
        leftovers.pop(pod.proc.pid, None)
    proctree.kill_all(leftovers)
    pod.known = {}


def terminate(pod: LocalPod, grace: float, log: Callable[[str], None]) -> None:
    """SIGTERM to the container's main process (which stops its own children), ``grace`` seconds,
    then SIGKILL to every process of the pod still there."""
    proc = pod.proc
    known: dict[int, proctree.Proc] = dict(pod.known)
    if proc is not None:
        known.pop(proc.pid, None)  # waited for below; never signal a reaped pid
    if proc is not None and proc.poll() is None:
        known.update(proctree.family(proc.pid, pod.tag))
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            # Children started during shutdown (or reparented) are still ours.
            known.update(proctree.family(proc.pid, pod.tag))
            time.sleep(0.2)
        if proc.poll() is None:
            log(f"{pod.plan.namespace}/{pod.plan.name} did not stop within {grace:.0f}s; killing it")
    known.update(proctree.family(pod.live_pid, pod.tag))
    proctree.kill_all(known)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
