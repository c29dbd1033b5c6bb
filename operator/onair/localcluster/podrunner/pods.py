"""What the runner knows of one local pod, and what it tells about it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from uuid import uuid4

from .. import proctree
from ..loopback import PodPlan


class Pending(Exception):
    """The pod cannot start yet (a ConfigMap, Secret, claim or Service is missing); retried."""


@dataclass
class LocalPod:
    plan: PodPlan
    log_path: Path
    tag: str = field(default_factory=lambda: uuid4().hex)
    proc: Optional[subprocess.Popen[bytes]] = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    pending: Optional[str] = None
    stopping: bool = False
    stopped: bool = False
    secret_dir: Optional[Path] = None
    secret_refreshed: float = 0.0
    ready: bool = False
    # Every process seen in this pod's family while it ran: what a crash leaves behind is killed
    # even once it is reparented and untagged (a container's cgroup would take it down too).
    known: dict[int, proctree.Proc] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.plan.namespace, self.plan.name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.stopping

    @property
    def live_pid(self) -> Optional[int]:
        """The agent's pid while its process has not exited (stopping or not), else None."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    livestream: Optional[str]
    component: Optional[str]
    pid: int
    ports: dict[str, int]  # container port name -> local port
    log_path: Path
    ready: bool
