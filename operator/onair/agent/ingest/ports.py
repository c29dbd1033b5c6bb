"""Fail fast, and say which port, when a listener cannot be had.

nginx and srt-live-transmit only say "bind() failed" in their own logs and then crash-loop under
the supervisor; checking first turns that into one line naming the port and the config field.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Iterable, Optional


@dataclass(frozen=True)
class Listener:
    field: str  # config field (camelCase, as users write it)
    label: str
    host: str
    port: int
    udp: bool = False


def duplicate_ports(listeners: Iterable[Listener]) -> Optional[str]:
    seen: dict[tuple[int, bool], Listener] = {}
    for listener in listeners:
        key = (listener.port, listener.udp)
        if key in seen:
            other = seen[key]
            return (
                f"{other.field} and {listener.field} are both {listener.port}/"
                f"{'udp' if listener.udp else 'tcp'}; every listener needs its own port"
            )
        seen[key] = listener
    return None


def bind_problem(listener: Listener) -> Optional[str]:
    """None when the port can be bound now (as nginx will: SO_REUSEADDR, so TIME_WAIT is fine)."""
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    kind = socket.SOCK_DGRAM if listener.udp else socket.SOCK_STREAM
    host = "" if listener.host in ("0.0.0.0", "*") else listener.host
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, listener.port))
        except OSError as exc:
            return (
                f"cannot listen on {listener.host}:{listener.port}/{'udp' if listener.udp else 'tcp'} "
                f"({listener.field}, {listener.label}): {exc.strerror}. "
                f"Another process holds the port; free it or change {listener.field} in the config."
            )
    return None


def first_problem(listeners: list[Listener]) -> Optional[str]:
    problem = duplicate_ports(listeners)
    if problem:
        return problem
    for listener in listeners:
        problem = bind_problem(listener)
        if problem:
            return problem
    return None


def can_bind(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False
