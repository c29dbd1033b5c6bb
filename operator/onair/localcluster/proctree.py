"""Finding every process one local pod started, so none outlives it.

The media agents start nginx, ffmpeg and srt-live-transmit in sessions of their own (so a signal to
the agent's group never reaches them), and nginx rewrites its environment for its process title.
A pod's processes are therefore: its agent, the agent's descendants, everything carrying the pod's
tag in its environment, and everything in the sessions of those. A ``(pid, start time)`` pair names
a process, so a pid reused by the kernel is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from typing import Optional

TAG_VAR = "ONAIR_PODRUNNER_TAG"


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    start: int  # starttime in clock ticks: (pid, start) names a process even after pid reuse


def proc_table() -> dict[int, Proc]:
    table: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        try:
            table[int(entry)] = Proc(int(entry), int(fields[1]), int(fields[3]), int(fields[19]))
        except (IndexError, ValueError):
            continue
    return table


def tags_of(table: dict[int, Proc]) -> dict[str, set[int]]:
    """Pids by the runner tag in their environment (one pass over /proc for every pod)."""
    prefix = f"{TAG_VAR}=".encode()
    found: dict[str, set[int]] = {}
    for pid in table:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if prefix not in env:
            continue
        for entry in env.split(b"\0"):
            if entry.startswith(prefix):
                found.setdefault(entry[len(prefix) :].decode(errors="replace"), set()).add(pid)
    return found


def family(
    root: Optional[int], tag: str, table: Optional[dict[int, Proc]] = None, tags: Optional[dict[str, set[int]]] = None
) -> dict[int, Proc]:
    """Every live process of one pod: the agent, its descendants, whatever carries its tag, and
    everything in the sessions of those (nginx rewrites its environment for the process title,
    so an orphaned nginx is found through its session, or through what the caller remembered)."""
    table = proc_table() if table is None else table
    tags = tags_of(table) if tags is None else tags
    members = set(tags.get(tag, ()))
    if root is not None and root in table:
        members.add(root)
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    stack = list(members)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in members:
                members.add(child)
                stack.append(child)
    own = {os.getsid(0), 0, 1}
    sessions = {table[p].sid for p in members if p in table} - own
    members |= {p.pid for p in table.values() if p.sid in sessions}
    members.discard(os.getpid())
    return {p: table[p] for p in members if p in table}


def kill_all(procs: dict[int, Proc]) -> None:
    """SIGKILL each process that is still the one recorded (same start time)."""
    current = proc_table()
    for pid, proc in procs.items():
        now = current.get(pid)
        if now is not None and now.start == proc.start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
