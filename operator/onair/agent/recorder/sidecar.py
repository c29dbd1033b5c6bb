"""The JSON sidecar that marks a recording session as finished, and what goes in it.

Written next to the parts once a session ends (stopped, source gone, agent stopping), and on
start-up for sessions a killed agent left without one, so every session on the volume ends up
with a sidecar. Written to a temporary name and renamed: a reader never sees half a sidecar.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from pydantic import ValidationError

from onair.api.agent import Recording

from .naming import PartFile, livestream_slug, sidecar_name

log = logging.getLogger("onair.agent.recorder")
SCHEMA_VERSION = 1
# /status lists this many finished sessions (the newest): a status object must stay small.
LISTED_SESSIONS = 50
SUMMARY_KEYS = ("startedAt", "endedAt", "durationSeconds", "endReason", "recovered", "recordType", "parts")


@dataclass(frozen=True)
class PartInfo:
    name: str
    bytes: int
    duration_seconds: Optional[float]


def isoformat(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sidecar_document(
    *,
    livestream: str,
    record_type: str,
    started_at: datetime,
    ended_at: datetime,
    parts: Sequence[PartInfo],
    end_reason: str,
    recorded_seconds: float,
    recovered: bool = False,
) -> dict:
    """``durationSeconds`` is what the parts hold (probed); ``recorded_seconds`` is what the
    agent counted while recording, the fallback when a part cannot be probed."""
    probed = [p.duration_seconds for p in parts if p.duration_seconds is not None]
    duration = sum(probed) if probed and len(probed) == len(parts) else recorded_seconds
    doc = {
        "version": SCHEMA_VERSION,
        "livestream": livestream,
        "recordType": record_type,
        "startedAt": isoformat(started_at),
        "endedAt": isoformat(ended_at),
        "durationSeconds": round(duration, 3),
        "endReason": end_reason,
        "parts": [
            {
                "file": p.name,
                "bytes": p.bytes,
                "durationSeconds": None if p.duration_seconds is None else round(p.duration_seconds, 3),
            }
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
    return {prefix: members for prefix, members in sessions.items() if not (output_dir / sidecar_name(prefix)).exists()}


class FinishedSessions:
    """The finished sessions of one livestream (its sidecars on the volume), for ``/status``.

    Read from the volume, so a restarted recorder still reports what earlier ones recorded; each
    sidecar is parsed once (re-read only when its size or mtime changes).
    """

    def __init__(self, output_dir: Path, livestream: str) -> None:
        self.output_dir = output_dir
        self._name = re.compile(rf"^{re.escape(livestream_slug(livestream))}_\d{{8}}T\d{{6}}Z\.json$")
        self._cache: dict[str, tuple[tuple[int, int], Optional[Recording]]] = {}

    def list(self) -> list[Recording]:
        try:
            names = sorted(entry.name for entry in os.scandir(self.output_dir) if self._name.match(entry.name))
        except OSError:
            return []
        names = names[-LISTED_SESSIONS:]
        for gone in set(self._cache) - set(names):
            del self._cache[gone]
        out = []
        for name in names:
            recording = self._read(name)
            if recording is not None:
                out.append(recording)
        return out

    def _read(self, name: str) -> Optional[Recording]:
        path = self.output_dir / name
        try:
            st = path.stat()
        except OSError:
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        recording: Optional[Recording] = None
        try:
            document = json.loads(path.read_text())
            fields = {key: document[key] for key in SUMMARY_KEYS if key in document}
            recording = Recording.model_validate({**fields, "session": name[: -len(".json")]})
        except (OSError, ValueError, TypeError, ValidationError) as exc:
            log.warning(
                "sidecar %s is unreadable (%s): it is left out of /status", name, str(exc).splitlines()[0][:200]
            )
        self._cache[name] = (stamp, recording)
        return recording
