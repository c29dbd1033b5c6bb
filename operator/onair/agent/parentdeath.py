"""Children that die with their agent: Linux's parent-death signal, set between fork and exec.

A SIGKILLed agent (OOM, ``kill -9``, a crashed pod runner) gets no chance to stop its children,
and every child runs in its own session, so nothing else reaches them: nginx would keep the
ports, ffmpeg would keep reading. ``prctl(PR_SET_PDEATHSIG)`` has the kernel send a signal to
the child when its parent goes away. Caveats that shape the code:

* The signal fires when the *thread* that forked the child exits, not the process. Agents spawn
  from their asyncio loop, which runs on the main thread for the agent's whole life.
* The setting survives exec (not a set-uid exec, which no child is) but not fork: a daemon that
  forks would escape. nginx runs with ``daemon off`` (the master is our child) and stops its
  own workers when SIGTERM reaches the master.
* The parent may die between fork and prctl; the child checks and exits instead of running
  unwatched. ``os._exit``, not a signal: the forked child still has the agent's handlers.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable, Optional

PR_SET_PDEATHSIG = 1


def _prctl() -> Optional[Callable[..., int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up once, in the parent: the child between fork and exec should do as little as possible.
_PRCTL = _prctl()


def die_with_parent(sig: int = signal.SIGTERM) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the child get ``sig`` when this process (thread) dies; None
    where the platform has no such thing (the child then outlives a killed agent, as before)."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return  # best effort: a child that cannot be watched still does its job
        if os.getppid() != parent:
            os._exit(1)

    return preexec
