"""File names of recordings: one session = one start time, numbered parts, one JSON sidecar.

``<namespace>_<name>_<YYYYmmddTHHMMSSZ>_part<NNNN>.mp4`` and ``<...Z>.json``: a plain ``ls``
sorts them by livestream, then by session start, then by part, and Kubernetes names never
contain ``_``, so the fields split back unambiguously.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

PART_DIGITS = 4
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def livestream_slug(livestream: str) -> str:
    """``namespace/name`` -> ``namespace_name``; anything a file system may dislike becomes ``-``."""
    return "_".join(_UNSAFE.sub("-", piece) or "-" for piece in livestream.split("/"))


def session_prefix(livestream: str, started: datetime) -> str:
    return f"{livestream_slug(livestream)}_{started.astimezone(timezone.utc).strftime(TIME_FORMAT)}"


def part_name(prefix: str, number: int) -> str:
    return f"{prefix}_part{number:0{PART_DIGITS}d}.mp4"


def part_pattern(prefix: str) -> str:
    """The ffmpeg segment muxer's output template for ``prefix`` (``%`` in the prefix is escaped)."""
    return f"{prefix.replace('%', '%%')}_part%0{PART_DIGITS}d.mp4"


def sidecar_name(prefix: str) -> str:
    return f"{prefix}.json"


@dataclass(frozen=True, order=True)
class PartFile:
    prefix: str
    number: int
    name: str


def _part_regex(livestream: str) -> re.Pattern[str]:
    return re.compile(rf"^(?P<prefix>{re.escape(livestream_slug(livestream))}_\d{{8}}T\d{{6}}Z)_part(?P<n>\d+)\.mp4$")


def parse_parts(livestream: str, names: Iterable[str]) -> list[PartFile]:
    """The part files of ``livestream`` among ``names``, sorted by session then part number."""
    regex = _part_regex(livestream)
    parts = []
    for name in names:
        match = regex.match(name)
        if match:
            parts.append(PartFile(match["prefix"], int(match["n"]), name))
    return sorted(parts)


def session_started(prefix: str) -> datetime:
    """The start time encoded in a session prefix."""
    return datetime.strptime(prefix.rsplit("_", 1)[1], TIME_FORMAT).replace(tzinfo=timezone.utc)


def list_parts(output_dir: Path, livestream: str) -> list[PartFile]:
    try:
        return parse_parts(livestream, (p.name for p in output_dir.iterdir()))
    except OSError:
        return []


def next_part_number(parts: Iterable[PartFile], prefix: str) -> int:
    """Parts continue after the highest one already on disk, so a resumed session never overwrites."""
    return max((p.number for p in parts if p.prefix == prefix), default=0) + 1


def unused_prefix(output_dir: Path, livestream: str, started: datetime) -> str:
    """A session prefix with no file yet; a stop/start within one second moves to the next second."""
    existing = {p.prefix for p in list_parts(output_dir, livestream)}
    candidate = started
    while True:
        prefix = session_prefix(livestream, candidate)
        if prefix not in existing and not (output_dir / sidecar_name(prefix)).exists():
            return prefix
        candidate = candidate.fromtimestamp(candidate.timestamp() + 1, timezone.utc)
