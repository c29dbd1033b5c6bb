"""The JSON sidecar that marks a recording session as finished, and what goes in it.

Written next to the parts once a session ends (stopped, source gone, agent stopping), and on
start-up for sessions a killed agent left without one, so every session on the volume ends up
with a sidecar. Written to a temporary name and renamed: a reader never sees half a sidecar.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from .naming import PartFile, sidecar_name

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PartInfo:
    name: str
    bytes: int
    duration_seconds: Optional[float]


def isoformat(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sidecar_document(*, livestream: str, record_type: str, started_at: datetime, ended_at: datetime,
                     parts: Sequence[PartInfo], end_reason: str, recorded_seconds: float,
                     recovered: bool = False) -> dict:
    """``durationSeconds`` is what the parts hold (probed); ``recorded_seconds`` is what the
    agent counted while recording, the fallback when a part cannot be probed."""
    probed = [p.duration_seconds for p in parts]
    duration = sum(probed) if probed and all(d is not None for d in probed) else recorded_seconds
    doc = {
        "version": SCHEMA_VERSION,
        "livestream": livestream,
        "recordType": record_type,
        "startedAt": isoformat(started_at),
        "endedAt": isoformat(ended_at),
        "durationSeconds": round(duration, 3),
        "endReason": end_reason,
        "parts": [
            {"file": p.name, "bytes": p.bytes,
             "durationSeconds": None if p.duration_seconds is None else round(p.duration_seconds, 3)}
            for p in parts
        ],
    }
    if recovered:
        doc["recovered"] = True
    return doc


def write_sidecar(output_dir: Path, prefix: str, document: dict) -> Path:
    target = output_dir / sidecar_name(prefix)
    temporary = output_dir / f".{sidecar_name(prefix)}.tmp"
    try:
        with open(temporary, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError:
        # A full disk must not leave a stray temporary file behind to be mistaken for anything.
        try:
            temporary.unlink()
        except OSError:
            pass
        raise
    return target


def sessions_without_sidecar(output_dir: Path, parts: Sequence[PartFile]) -> dict[str, list[PartFile]]:
    """Session prefix -> its parts, for every session that has parts but no sidecar yet."""
    sessions: dict[str, list[PartFile]] = {}
    for part in parts:
        sessions.setdefault(part.prefix, []).append(part)
    return {prefix: members for prefix, members in sessions.items()
            if not (output_dir / sidecar_name(prefix)).exists()}
