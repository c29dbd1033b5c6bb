"""The parts of a livestream's recording sessions, on the volume or uploaded and removed from it
(their upload markers stay), what each part holds, and the sidecar a session left without one gets."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from .duration import probe_duration
from .naming import PartFile, list_parts, session_started
from .sidecar import PartInfo, sessions_without_sidecar, sidecar_document
from .upload import read_marker, uploaded_parts


def session_parts(output_dir: Path, livestream: str, uploads: bool) -> list[PartFile]:
    """Part numbers never repeat within a session, and a sidecar lists every part: with ``uploads``
    those uploaded and removed from the volume count too."""
    parts = set(list_parts(output_dir, livestream))
    if uploads:
        parts |= set(uploaded_parts(output_dir, livestream))
    return sorted(parts)


async def part_infos(output_dir: Path, parts: Iterable[PartFile]) -> list[PartInfo]:
    """Size and probed duration of each part; an uploaded part's come from its marker."""
    infos = []
    for part in parts:
        path = output_dir / part.name
        try:
            size = path.stat().st_size
        except OSError:
            marker = read_marker(output_dir, part.name)
            if marker is not None:
                infos.append(PartInfo(part.name, marker.bytes, marker.duration_seconds))
                continue
            size = 0
        infos.append(PartInfo(part.name, size, await probe_duration(path)))
    return infos


async def recovered_sidecars(
    output_dir: Path, livestream: str, record_type: str, parts: list[PartFile]
) -> list[tuple[str, dict]]:
    """(session prefix, sidecar document) of every session a killed agent left without a sidecar:
    marked recovered, ended at its newest part's mtime, lasting what its parts hold."""
    out = []
    for prefix, members in sessions_without_sidecar(output_dir, parts).items():
        infos = await part_infos(output_dir, members)
        mtimes = []
        for part in members:
            try:
                mtimes.append((output_dir / part.name).stat().st_mtime)
            except OSError:
                pass
        started = session_started(prefix)
        ended = datetime.fromtimestamp(max(mtimes), timezone.utc) if mtimes else started
        recorded = sum(i.duration_seconds or 0.0 for i in infos)
        out.append(
            (
                prefix,
                sidecar_document(
                    livestream=livestream,
                    record_type=record_type,
                    started_at=started,
                    ended_at=max(ended, started),
                    parts=infos,
                    end_reason="recovered: the previous recorder stopped without finalizing",
                    recorded_seconds=recorded,
                    recovered=True,
                ),
            )
        )
    return out
