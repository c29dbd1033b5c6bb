"""How much room the recordings volume has left."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def free_bytes(path: Path) -> Optional[int]:
    """Bytes an unprivileged writer may still use, or None when the volume cannot be read."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
