"""A port nothing listens on right now, for processes started on this machine (the local
cluster, the process runner, tests).

Ports come from below the kernel's ephemeral range (``net.ipv4.ip_local_port_range``) and below
Kubernetes' NodePort range: the kernel takes source ports of outgoing connections from the
ephemeral range, so a port picked there can be taken by any process's connect() in the moment
between picking it and listening on it (SeaweedFS's S3 server once lost its gRPC port to its own
connection to the master that way). Another listener may still take a picked port first, which
is why callers that start several listeners keep a set of taken ones.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 15000
NODE_PORT_RANGE_START = 30000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Not the module's generator: a test that seeds it must not make parallel workers pick alike.
_pick = random.SystemRandom()


def _highest() -> int:
    """One below the first port the kernel may hand out as a source port, and below NodePorts."""
    try:
        ephemeral_start = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32768
    return min(ephemeral_start, NODE_PORT_RANGE_START) - 1


def _bindable(kind: int, host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(
    kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1", taken: frozenset[int] | set[int] = frozenset()
) -> int:
    """``kind``: socket.SOCK_STREAM (TCP) or socket.SOCK_DGRAM (UDP); never one of ``taken``."""
    highest = _highest()
    if highest > LOWEST:
        for _ in range(200):
            port = _pick.randint(LOWEST, highest)
            if port not in taken and _bindable(kind, host, port):
                return port
    for _ in range(100):  # a machine whose ephemeral range starts low: the kernel's pick
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
    raise RuntimeError(f"no free port on {host} after 300 tries")
