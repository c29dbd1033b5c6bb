"""A port nothing listens on right now, for processes started on this machine (the local
cluster, the process runner, tests). The kernel picks it; another process may still take it
before it is used, which is why callers that start several listeners keep a set of taken ones.
"""
from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1", taken: frozenset[int] | set[int] = frozenset()
              ) -> int:
    """``kind``: socket.SOCK_STREAM (TCP) or socket.SOCK_DGRAM (UDP); never one of ``taken``."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
    raise RuntimeError(f"no free port on {host} after 100 tries")
