"""How long a recorded part plays, asked of ffprobe (bounded, supervised like every child)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Optional

from onair.agent.supervisor import Child

log = logging.getLogger("onair.agent.recorder")
FFPROBE = shutil.which("ffprobe") or "ffprobe"


def parse_duration(lines: list[str]) -> Optional[float]:
    """The first line that is a number; ffprobe prints ``N/A`` or errors for an unreadable file."""
    for line in lines:
        try:
            value = float(line.strip())
        except ValueError:
            continue
        if value >= 0:
            return value
    return None


async def probe_duration(path: Path, timeout: float = 60.0) -> Optional[float]:
    lines: list[str] = []
    done = asyncio.Event()
    child = Child(
        name=f"ffprobe {path.name}",
        argv=[FFPROBE, "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)],
        restart=False,
        on_line=lines.append,
        on_exit=lambda code: done.set(),
        log_level=logging.DEBUG,
    )
    child.start()
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        log.warning("ffprobe of %s did not finish within %.0fs; its duration is left out", path.name, timeout)
        await child.stop()
        return None
    await child.stop()
    return parse_duration(lines)
