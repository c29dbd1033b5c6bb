"""The origin's DVR: its own index of HLS segments per rendition, and the playlists made from it.

The transcoder uploads a short live playlist per rendition and deletes old segments; the
origin keeps every segment it was sent for ``window_seconds`` and serves playlists built from
that index, never from the upload. That is what lets it:

* keep a rewind window far longer than the transcoder's, whatever the transcoder deletes;
* survive transcoder restarts: a new run (new init segment, sequence reset or jump, explicit
  discontinuity) becomes an ``EXT-X-DISCONTINUITY`` carrying its own ``EXT-X-MAP``, and the
  origin's media sequence keeps counting, so players never see the playlist go backwards;
* never serve ``EXT-X-ENDLIST`` because one ffmpeg run stopped (only when the caller says the
  stream ended, or the upstream ENDLIST stayed unanswered for a grace period);
* keep served files immutable: an upload that would overwrite a file the DVR still references
  (ffmpeg rewrites its init segment in place after a restart) is stored under a new name.

A segment enters the index when an uploaded playlist lists it *and* its bytes were uploaded
since it was last indexed ("fresh"), which makes retries, restarts that reuse names, and
playlists listing not-yet-uploaded segments all come out right.

Pure: no I/O and no clock; the server passes ``now`` and performs the deletions it is told to.
"""
from __future__ import annotations

import posixpath
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Optional

from .hls import MediaPlaylist, format_pdt
from .paths import BadPath, relative_uri, resolve_uri

# Without DVR the origin still serves a short live window: enough for hls.js to sit three
# target durations behind the edge and ride out a late upload.
LIVE_WINDOW_SEGMENTS = 6
LIVE_WINDOW_MIN_SECONDS = 12.0
# A segment that slid out of the window stays on disk this many target durations (at least
# GRACE_MIN_SECONDS): a player that loaded the previous playlist may still ask for it.
GRACE_TARGET_DURATIONS = 3
GRACE_MIN_SECONDS = 10.0
# An uploaded ENDLIST becomes ours only if no new segment follows within this many seconds;
# a restarting transcoder (SIGINT writes ENDLIST) resumes well within it.
UPSTREAM_END_GRACE_SECONDS = 30.0
# Uploaded files no playlist has listed after this long are abandoned (transcoder crashed
# between segment and playlist) and deleted.
FRESH_TTL_SECONDS = 120.0
MAX_FRESH = 10000


@dataclass(frozen=True)
class Segment:
    path: str  # data_dir-relative, as stored and served
    duration: float
    sequence: int  # the origin's media sequence number: never resets
    discontinuity: int  # absolute discontinuity sequence number
    init: Optional[str]  # stored path of the EXT-X-MAP, if any
    program_date_time: Optional[datetime]
    upstream_sequence: int


class Rendition:
    """One media playlist path and the segments the DVR holds for it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.segments: deque[Segment] = deque()
        self.duration = 0.0
        self.next_sequence = 0
        self.discontinuity = 0
        self.last: Optional[Segment] = None  # survives clear(): continuity with what comes next
        self.target_duration = 1
        self.version = 3
        self.independent_segments = False
        self.upstream_ended_at: Optional[float] = None
        self.revision = 0  # bumped on every change: keys the rendered-playlist cache

    def upstream_ended(self, now: float, grace: float = UPSTREAM_END_GRACE_SECONDS) -> bool:
        return self.upstream_ended_at is not None and now - self.upstream_ended_at >= grace

    @property
    def grace_seconds(self) -> float:
        return max(GRACE_MIN_SECONDS, GRACE_TARGET_DURATIONS * self.target_duration)


@dataclass(frozen=True)
class Ingested:
    appended: tuple[Segment, ...]
    removed: tuple[Segment, ...]
    skipped: tuple[str, ...] = ()  # URIs refused (URLs, escapes, byte ranges)


class Dvr:
    def __init__(self, window_seconds: float, enabled: bool = True) -> None:
        self.window_seconds = float(window_seconds)
        self.enabled = enabled
        self.renditions: dict[str, Rendition] = {}
        self.refs: Counter[str] = Counter()  # stored path -> segments referencing it
        self.latest: dict[str, str] = {}  # upstream path -> where its last upload was stored
        self.fresh: dict[str, float] = {}  # upstream path -> upload time, not yet indexed
        self.pending_delete: dict[str, float] = {}  # stored path -> delete-after time
        self._rendered: dict[str, tuple[tuple, str]] = {}
        # Changes since the last drain_journal(), for the server to persist (see replay()).
        self.journal: list[dict] = []

    # ------------------------------------------------------------------------- uploads
    def placement(self, path: str, identical: Callable[[str], bool]) -> Optional[str]:
        """Where to store an upload of ``path``; ``None`` if it repeats bytes the DVR already has.

        ``identical(stored)`` compares the new bytes with a stored file. Only files the DVR
        references are protected; anything else is simply overwritten.
        """
        current = self.latest.get(path, path)
        if self._protected(current) and identical(current):
            return None
        if not self._protected(path):
            return path
        stem, ext = posixpath.splitext(path)
        n = 2
        while self._protected(f"{stem}~{n}{ext}"):
            n += 1
        return f"{stem}~{n}{ext}"

    def _protected(self, stored: str) -> bool:
        return bool(self.refs.get(stored)) or self._is_current_init(stored)

    def uploaded(self, path: str, stored: str, now: float) -> None:
        """Record that the bytes for upstream ``path`` now live at ``stored``."""
        self.latest[path] = stored
        self.fresh.pop(path, None)
        self.fresh[path] = now
        self.pending_delete.pop(stored, None)
        while len(self.fresh) > MAX_FRESH:
            del self.fresh[next(iter(self.fresh))]

    def ingest(self, path: str, playlist: MediaPlaylist, now: float) -> Ingested:
        """Append the fresh segments an uploaded media playlist lists, then slide the window."""
        r = self._rendition(path)
        self._set_meta(r, max(r.target_duration, playlist.target_duration), max(r.version, playlist.version),
                       r.independent_segments or playlist.independent_segments)
        appended: list[Segment] = []
        skipped: list[str] = []
        for up in playlist.segments:
            try:
                if up.byterange:
                    raise BadPath("byte-range segments are not supported")
                up_path = resolve_uri(path, up.uri)
                map_path = resolve_uri(path, up.map_uri) if up.map_uri else None
            except BadPath:
                skipped.append(up.uri)
                continue
            if up_path not in self.fresh:
                continue  # already indexed, or listed before its bytes arrived
            init = self.latest.get(map_path, map_path) if map_path else None
            if map_path:
                self.fresh.pop(map_path, None)
            prev = r.last
            if prev is not None and (up.discontinuity or init != prev.init
                                     or up.sequence != prev.upstream_sequence + 1):
                r.discontinuity += 1
            seg = Segment(self.latest.get(up_path, up_path), up.duration, r.next_sequence, r.discontinuity,
                          init, up.program_date_time, up.sequence)
            del self.fresh[up_path]
            if int(seg.duration + 0.5) > r.target_duration:
                self._set_meta(r, int(seg.duration + 0.5), r.version, r.independent_segments)
            self._append(r, seg)
            self.journal.append({"op": "add", "p": r.path, "s": _encode(seg)})
            appended.append(seg)
        r.upstream_ended_at = (r.upstream_ended_at or now) if playlist.endlist else None
        removed = self._trim(r, now)
        if appended or removed:
            r.revision += 1
        return Ingested(tuple(appended), tuple(removed), tuple(skipped))

    def _rendition(self, path: str) -> Rendition:
        r = self.renditions.get(path)
        if r is None:
            r = self.renditions[path] = Rendition(path)
        return r

    def _set_meta(self, r: Rendition, target_duration: int, version: int, independent: bool) -> None:
        if (r.target_duration, r.version, r.independent_segments) != (target_duration, version, independent):
            r.target_duration, r.version, r.independent_segments = target_duration, version, independent
            self.journal.append({"op": "meta", "p": r.path, "td": target_duration, "v": version, "ind": independent})

    def _append(self, r: Rendition, seg: Segment) -> None:
        r.segments.append(seg)
        r.duration += seg.duration
        self._continue_after(r, seg)
        for stored in (seg.path, seg.init):
            if stored:
                self.refs[stored] += 1
                self.pending_delete.pop(stored, None)

    @staticmethod
    def _continue_after(r: Rendition, seg: Segment) -> None:
        r.last = seg
        r.next_sequence = seg.sequence + 1
        r.discontinuity = seg.discontinuity

    def keeps(self, path: str) -> bool:
        """Whether a transcoder DELETE of ``path`` must be ignored: the DVR still serves it."""
        return self._protected(path)

    def forget(self, path: str) -> None:
        """The upstream file ``path`` was deleted on the transcoder's request."""
        self.fresh.pop(path, None)
        if self.latest.get(path) == path:
            del self.latest[path]
        self.pending_delete.pop(path, None)

    # ------------------------------------------------------------------------- window
    def window_for(self, r: Rendition) -> float:
        if self.enabled:
            return self.window_seconds
        return max(LIVE_WINDOW_MIN_SECONDS, LIVE_WINDOW_SEGMENTS * r.target_duration)

    def _trim(self, r: Rendition, now: float) -> list[Segment]:
        window = self.window_for(r)
        removed = []
        # Keep the shortest tail that still covers the whole window.
        while len(r.segments) > 1 and r.duration - r.segments[0].duration >= window - 1e-6:
            seg = r.segments.popleft()
            r.duration -= seg.duration
            self._release(seg, now + r.grace_seconds)
            removed.append(seg)
        if removed:
            self.journal.append({"op": "trim", "p": r.path, "n": len(removed)})
        return removed

    def _release(self, seg: Segment, delete_after: float) -> None:
        for stored in (seg.path, seg.init):
            if not stored:
                continue
            self.refs[stored] -= 1
            if self.refs[stored] <= 0:
                del self.refs[stored]
                self.pending_delete[stored] = delete_after

    def _is_current_init(self, path: str) -> bool:
        return any(r.last is not None and r.last.init == path for r in self.renditions.values())

    def clear(self) -> list[str]:
        """Empty every window; returns the files to delete now. New uploads keep appending."""
        self.journal.append({"op": "clear"})
        for r in self.renditions.values():
            for seg in r.segments:
                self._release(seg, 0.0)
            r.segments.clear()
            r.duration = 0.0
            r.revision += 1
        doomed = [p for p in self.pending_delete if not self.refs.get(p) and not self._is_current_init(p)]
        for p in doomed:
            del self.pending_delete[p]
        return doomed

    def due(self, now: float) -> list[str]:
        """Files whose grace has passed (slid out, or uploaded and never listed): delete them."""
        for path, uploaded_at in list(self.fresh.items()):
            if now - uploaded_at < FRESH_TTL_SECONDS:
                break  # insertion order is upload order
            del self.fresh[path]
            stored = self.latest.get(path, path)
            if not self.refs.get(stored) and not self._is_current_init(stored):
                self.pending_delete.setdefault(stored, now)
        doomed = []
        for path, deadline in list(self.pending_delete.items()):
            if deadline <= now:
                del self.pending_delete[path]
                if not self.refs.get(path) and not self._is_current_init(path):
                    doomed.append(path)
        return doomed

    # ------------------------------------------------------------------------- persistence
    def drain_journal(self) -> list[dict]:
        records, self.journal = self.journal, []
        return records

    def snapshot(self) -> list[dict]:
        """Records that rebuild the current index from nothing (to compact a journal)."""
        records: list[dict] = []
        for r in self.renditions.values():
            records.append({"op": "meta", "p": r.path, "td": r.target_duration, "v": r.version,
                            "ind": r.independent_segments})
            records += [{"op": "add", "p": r.path, "s": _encode(seg)} for seg in r.segments]
            if not r.segments and r.last is not None:
                records.append({"op": "cont", "p": r.path, "s": _encode(r.last)})
        return records

    def replay(self, records: Iterable[dict], now: float) -> int:
        """Rebuild the index a previous process journaled; returns the records it could not use.

        The window is re-applied afterwards: the configured window may have shrunk meanwhile.
        """
        bad = 0
        for record in records:
            try:
                op = record["op"]
                if op == "clear":
                    self.clear()
                    continue
                r = self._rendition(record["p"])
                if op == "meta":
                    r.target_duration, r.version, r.independent_segments = int(record["td"]), int(record["v"]), bool(record["ind"])
                elif op == "add":
                    self._append(r, _decode(record["s"]))
                elif op == "cont":
                    self._continue_after(r, _decode(record["s"]))
                elif op == "trim":
                    for _ in range(min(int(record["n"]), len(r.segments))):
                        seg = r.segments.popleft()
                        r.duration -= seg.duration
                        self._release(seg, now + r.grace_seconds)
                else:
                    bad += 1
            except (KeyError, TypeError, ValueError, IndexError):
                bad += 1
        for r in self.renditions.values():
            self._trim(r, now)
            r.revision += 1
        self.journal.clear()
        return bad

    # ------------------------------------------------------------------------- serving
    def playlists(self) -> list[str]:
        return sorted(p for p, r in self.renditions.items() if r.segments)

    def segment_count(self, path: str) -> int:
        r = self.renditions.get(path)
        return len(r.segments) if r else 0

    def available_seconds(self) -> Optional[float]:
        """The rewind depth every rendition can offer (the shortest window), None if empty."""
        durations = [r.duration for r in self.renditions.values() if r.segments]
        return min(durations) if durations else None

    def render(self, path: str, ended: bool, query: str = "") -> Optional[str]:
        r = self.renditions.get(path)
        if r is None or not r.segments:
            return None
        if query:
            return render_playlist(r, r.segments, ended, query)
        # Every viewer reloads the same playlist each target duration, and a 4 h window is
        # thousands of lines: render once per change.
        key = (r.revision, ended)
        cached = self._rendered.get(path)
        if cached is None or cached[0] != key:
            cached = self._rendered[path] = (key, render_playlist(r, r.segments, ended))
        return cached[1]


def _encode(seg: Segment) -> list:
    return [seg.path, seg.duration, seg.sequence, seg.discontinuity, seg.init,
            seg.program_date_time.isoformat() if seg.program_date_time else None, seg.upstream_sequence]


def _decode(raw: list) -> Segment:
    path, duration, sequence, discontinuity, init, pdt, upstream = raw
    return Segment(str(path), float(duration), int(sequence), int(discontinuity), str(init) if init else None,
                   datetime.fromisoformat(pdt) if pdt else None, int(upstream))


def render_playlist(r: Rendition, segments: Iterable[Segment], ended: bool, query: str = "") -> str:
    segments = list(segments)
    first = segments[0]
    suffix = f"?{query}" if query else ""
    has_map = any(s.init for s in segments)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{max(r.version, 6 if has_map else 3)}",
        f"#EXT-X-TARGETDURATION:{r.target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{first.sequence}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{first.discontinuity}",
    ]
    if r.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    prev: Optional[Segment] = None
    for seg in segments:
        new_period = prev is not None and seg.discontinuity != prev.discontinuity
        if new_period:
            lines.append("#EXT-X-DISCONTINUITY")
        # Each discontinuity repeats its EXT-X-MAP, even an unchanged one: a player joining or
        # seeking into that period must not guess which init applies.
        if seg.init and (prev is None or new_period or seg.init != prev.init):
            lines.append(f'#EXT-X-MAP:URI="{relative_uri(r.path, seg.init)}{suffix}"')
        if seg.program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(seg.program_date_time)}")
        lines.append(f"#EXTINF:{seg.duration:.6f},")
        lines.append(f"{relative_uri(r.path, seg.path)}{suffix}")
        prev = seg
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
