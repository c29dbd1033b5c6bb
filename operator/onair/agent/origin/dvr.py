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

Public and private segments. Viewers see only what was broadcast to them: a segment is public
when it began after the origin was last made public (``set_public``: viewers allowed and public
broadcasting on) and no later than it was made private again; the backstage preview and outputs
made only for a transcoded recording stay private for good, also once the stream is live or
ended. Token holders and in-cluster readers get every segment; viewers get the public ones,
numbered on their own (``public_sequence``, ``public_discontinuity``, a discontinuity wherever
private segments were left out) so their playlist stays consistent from one reload to the next.
Until the first public segment nothing is numbered for viewers, and it keeps the members' numbers
(``sequence``, ``discontinuity``): so origin replicas made public a moment apart (go-live reaches each at
its own time) number the viewers' playlist alike at every instant, the later one's window simply
beginning a segment or two later. After a private stretch *between* public ones the viewers'
numbering goes on from their last segment, which depends on when each replica was made private:
replicas may then differ until they compare their last segments (``behind``, ``replicas.py``).

Low-latency HLS (RFC 8216bis). When the transcoder's playlists carry partial segments, the
index also keeps the parts of the last few segments and of the segment still being written, and
the playlist gains what LL-HLS clients need (``render_playlist``): ``EXT-X-SERVER-CONTROL``
(blocking reload, delta updates, ``PART-HOLD-BACK``), ``EXT-X-PART-INF``, ``EXT-X-PART`` for the
segments within ``PART_WINDOW_TARGET_DURATIONS`` of the live edge, ``EXT-X-PRELOAD-HINT`` and an
``EXT-X-RENDITION-REPORT`` per sibling rendition. It is the same playlist, segment for segment,
that a client ignoring parts plays; the DVR window is untouched. Parts are not journaled: after a
restart the live edge is rebuilt from the next uploads. ``wait_state`` tells the server whether a
blocking reload (``_HLS_msn``/``_HLS_part``) can be answered, must wait, or asks too far ahead.

Pure: no I/O and no clock; the server passes ``now`` and performs the deletions it is told to.
"""

from __future__ import annotations

import posixpath
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Optional

from onair.agent import hls
from onair.agent.hls import extinf_tag, map_tag, part_tag, pdt_tag, preload_hint_tag
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
# After a private stretch, a segment is public only if it began after the switch: its upload time
# minus its duration at least this long after the last upload made while private (the transcoder
# uploads a segment a little after its last frame, give or take this much), and its
# PROGRAM-DATE-TIME not before the switch.
PUBLIC_MARGIN_SECONDS = 0.5
# Uploaded files no playlist has listed after this long are abandoned (transcoder crashed
# between segment and playlist) and deleted.
FRESH_TTL_SECONDS = 120.0
MAX_FRESH = 10000
# LL-HLS (RFC 8216bis 6.2.2): parts are listed for the segments this many target durations from the
# end of the playlist; older ones are only segments. The server also keeps PART-HOLD-BACK at this
# many part targets (the RFC asks for at least two, and three for clients to ride out a late part).
PART_WINDOW_TARGET_DURATIONS = 3
PART_HOLD_BACK_PART_TARGETS = 3
# Delta updates skip segments older than this many target durations from the end (the RFC's minimum).
SKIP_TARGET_DURATIONS = 6
# A blocking reload may ask at most this many segments beyond the last one (RFC 8216bis 6.2.5.2)...
BLOCK_AHEAD_SEGMENTS = 2
# ...and this many seconds of parts beyond the last part (the Advance Part Limit: 3 s, or 3 parts
# when parts are a second or longer).
BLOCK_AHEAD_SECONDS = 3.0
# Replicas compare this many of their last segments per rendition (``recent``, ``behind``).
RECENT_SEGMENTS = 5
# A master playlist of standard HLS asked for at least this far into a segment (in target durations)
# is answered when the next segment is listed (``join_targets``); earlier, waiting gains too little.
JOIN_HOLD_MIN_PHASE = 0.1
# No listing for this many target durations: the stream is not flowing, nobody waits for the next.
JOIN_HOLD_MAX_PHASE = 1.5


@dataclass(frozen=True)
class Segment:
    path: str  # data_dir-relative, as stored and served
    duration: float
    sequence: int  # the origin's media sequence number: never resets
    discontinuity: int  # absolute discontinuity sequence number
    init: Optional[str]  # stored path of the EXT-X-MAP, if any
    program_date_time: Optional[datetime]
    upstream_sequence: int
    public: bool = True  # viewers without a token may get it
    public_sequence: int = 0  # its media sequence number in the viewers' playlist (public segments only)
    public_discontinuity: int = 0


@dataclass(frozen=True)
class Part:
    path: str  # stored
    upstream: str  # as the transcoder named it
    duration: float
    independent: bool


@dataclass(frozen=True)
class SegmentParts:
    sequence: int  # the origin's media sequence of the segment these parts make up
    parts: tuple[Part, ...]


class Rendition:
    """One media playlist path and the segments the DVR holds for it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.segments: deque[Segment] = deque()
        self.duration = 0.0
        self.next_sequence = 0
        self.discontinuity = 0
        self.last: Optional[Segment] = None  # survives clear(): continuity with what comes next
        self.last_public: Optional[Segment] = None  # the same for the viewers' playlist
        self.next_public_sequence = 0
        self.public_discontinuity = 0
        self.target_duration = 1
        self.version = 3
        self.independent_segments = False
        self.upstream_ended_at: Optional[float] = None
        self.revision = 0  # bumped on every change: keys the rendered-playlist cache
        # LL-HLS: None while the transcoder sends no parts.
        self.part_target: Optional[float] = None
        self.parts: deque[SegmentParts] = deque()  # of the last few segments, oldest first
        self.open_parts: tuple[Part, ...] = ()  # of the segment being written (sequence next_sequence)
        self.open_public = False  # whether viewers get the open parts
        self.hint: Optional[str] = None  # stored path the next part will have
        self.listed_at: Optional[float] = None  # when the last segment was indexed; not journaled

    def parts_of(self, sequence: int) -> tuple[Part, ...]:
        for entry in self.parts:
            if entry.sequence == sequence:
                return entry.parts
        return ()

    @property
    def low_latency(self) -> bool:
        return self.part_target is not None

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
        self._rendered: dict[tuple[str, bool, bool], tuple[tuple, str]] = {}  # (path, public, skip)
        # Segments beginning after this (monotonic; the wall clock one for PROGRAM-DATE-TIME) are
        # public; None: no new segment is. Public from the start for a bare Dvr; the origin decides
        # (set_public).
        self.public_since: Optional[float] = float("-inf")
        self.public_since_wall: Optional[datetime] = None
        self.private_upload_at: Optional[float] = None  # last upload while not public
        # Stored segment and init paths -> may viewers without a token get them (inits always may).
        self.visibility: dict[str, bool] = {}
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
        self.upload_seen(now)
        self.latest[path] = stored
        self.fresh.pop(path, None)
        self.fresh[path] = now
        self.pending_delete.pop(stored, None)
        if any(r.hint == path for r in self.renditions.values()):
            # The preload hint's part, served before any playlist lists it: public as a part of
            # the open segment would be (the playlist that lists it decides for good).
            self.visibility[stored] = self.began_public(now, 0.0)
        while len(self.fresh) > MAX_FRESH:
            del self.fresh[next(iter(self.fresh))]

    def ingest(self, path: str, playlist: hls.MediaPlaylist, now: float) -> Ingested:
        """Append the fresh segments an uploaded media playlist lists, then slide the window."""
        r = self._rendition(path)
        self._set_meta(
            r,
            max(r.target_duration, playlist.target_duration),
            max(r.version, playlist.version),
            r.independent_segments or playlist.independent_segments,
        )
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
            if prev is not None and (
                up.discontinuity or init != prev.init or up.sequence != prev.upstream_sequence + 1
            ):
                r.discontinuity += 1
            public = self.began_public(self.fresh[up_path], up.duration, up.program_date_time)
            public_sequence, public_discontinuity = r.next_public_sequence, r.public_discontinuity
            last_public = r.last_public
            if public and last_public is None:
                # The first public segment keeps the numbers the upload order gave it: replicas
                # made public a moment apart (their first public segments differ) still name
                # every segment they both show alike, as a sliding window that began later.
                public_sequence, public_discontinuity = r.next_sequence, r.discontinuity
            elif (
                public
                and last_public is not None
                and (last_public.discontinuity != r.discontinuity or last_public.sequence != r.next_sequence - 1)
            ):
                public_discontinuity += 1  # a new period, or private segments left out in between
            seg = Segment(
                self.latest.get(up_path, up_path),
                up.duration,
                r.next_sequence,
                r.discontinuity,
                init,
                up.program_date_time,
                up.sequence,
                public,
                public_sequence if public else 0,
                public_discontinuity if public else 0,
            )
            del self.fresh[up_path]
            if hls.target_duration_for(seg.duration) > r.target_duration:
                self._set_meta(r, hls.target_duration_for(seg.duration), r.version, r.independent_segments)
            self._append(r, seg)
            self.journal.append({"op": "add", "p": r.path, "s": _encode(seg)})
            appended.append(seg)
            if up.parts:
                parts = self._uploaded_parts(path, up.parts)
                if len(parts) == len(up.parts):  # all or nothing: a segment is never half made of parts
                    self._hold_parts(parts, seg.public)
                    r.parts.append(SegmentParts(seg.sequence, parts))
        if appended:
            r.listed_at = now
        r.upstream_ended_at = (r.upstream_ended_at or now) if playlist.endlist else None
        parts_changed = self._ingest_open_parts(r, path, playlist, now)
        removed = self._trim(r, now)
        if appended or removed or parts_changed:
            r.revision += 1
        return Ingested(tuple(appended), tuple(removed), tuple(skipped))

    # ------------------------------------------------------------------------- LL-HLS parts
    def _uploaded_parts(self, playlist_path: str, ups: Iterable[hls.Part]) -> tuple[Part, ...]:
        """The leading parts whose bytes arrived, in order (a later one is useless without them)."""
        parts = []
        for up in ups:
            try:
                up_path = resolve_uri(playlist_path, up.uri)
            except BadPath:
                break
            stored = self.latest.get(up_path)
            if stored is None:
                break
            parts.append(Part(stored, up_path, up.duration, up.independent))
        return tuple(parts)

    def _hold_parts(self, parts: Iterable[Part], public: bool) -> None:
        """One reference per holder (the open segment, a finished segment): a part moving from one
        to the other is never unreferenced in between."""
        for part in parts:
            self.refs[part.path] += 1
            self.pending_delete.pop(part.path, None)
            self.fresh.pop(part.upstream, None)
            self.visibility[part.path] = public

    def _release_parts(self, parts: Iterable[Part], delete_after: float) -> None:
        for part in parts:
            self.refs[part.path] -= 1
            if self.refs[part.path] <= 0:
                del self.refs[part.path]
                self.pending_delete[part.path] = delete_after
                if self.latest.get(part.upstream) == part.path:
                    del self.latest[part.upstream]

    def _ingest_open_parts(self, r: Rendition, path: str, playlist: hls.MediaPlaylist, now: float) -> bool:
        before = (r.part_target, r.open_parts, r.hint, len(r.parts))
        if playlist.part_target is None:
            r.part_target = None
            new_open: tuple[Part, ...] = ()
            r.hint = None
        else:
            longest = max([p.duration for p in r.open_parts] + [p.duration for e in r.parts for p in e.parts] + [0.0])
            r.part_target = max(playlist.part_target, longest)
            new_open = self._uploaded_parts(path, playlist.open_parts)
            try:
                open_map = resolve_uri(path, playlist.open_map_uri) if playlist.open_map_uri else None
            except BadPath:
                open_map = None
            open_init = self.latest.get(open_map, open_map) if open_map else None
            if r.last is None or open_init != r.last.init:
                # A new run's first parts: they start a new period, which begins with its first
                # segment (its discontinuity and EXT-X-MAP); until then the live edge is that segment.
                new_open = ()
            try:
                r.hint = resolve_uri(path, playlist.preload_hint) if playlist.preload_hint else None
            except BadPath:
                r.hint = None
            if len(new_open) < len(playlist.open_parts):
                r.hint = None  # the parts after a missing one are not listed: nor is what follows them
        if new_open and not r.open_parts or (new_open and r.open_parts and new_open[0] != r.open_parts[0]):
            first = new_open[0]
            # Like a segment: public when it began after the origin was made public.
            r.open_public = self.began_public(self.latest_upload(first.upstream, now), first.duration)
        self._hold_parts(new_open, r.open_public)
        self._release_parts(r.open_parts, now + r.grace_seconds)
        r.open_parts = new_open
        self._trim_parts(r, now)
        return before != (r.part_target, r.open_parts, r.hint, len(r.parts))

    def latest_upload(self, upstream: str, now: float) -> float:
        return self.fresh.get(upstream, now)

    def _trim_parts(self, r: Rendition, now: float) -> None:
        """Parts of the segments within PART_WINDOW_TARGET_DURATIONS of the end, and of none that left the window."""
        first = r.segments[0].sequence if r.segments else r.next_sequence
        keep_seconds = PART_WINDOW_TARGET_DURATIONS * r.target_duration
        kept = sum(p.duration for p in r.open_parts)
        keep_from = r.next_sequence
        for seg in reversed(r.segments):
            if kept >= keep_seconds:
                break
            kept += seg.duration
            keep_from = seg.sequence
        while r.parts and (r.parts[0].sequence < max(first, keep_from) or r.part_target is None):
            self._release_parts(r.parts.popleft().parts, now + r.grace_seconds)

    # ------------------------------------------------------------------------- public or private
    def set_public(self, public: bool, now: float, wall: datetime) -> bool:
        """Segments beginning from now on are public (or private); True when that changed.

        Nothing uploaded while private (no preview, a fresh origin): every segment from now on is
        public, the first one included.
        """
        if public == (self.public_since is not None):
            return False
        if not public:
            self.public_since, self.public_since_wall = None, None
        elif self.private_upload_at is None:
            self.public_since, self.public_since_wall = float("-inf"), None
        else:
            self.public_since, self.public_since_wall = self.private_upload_at, wall
        self.private_upload_at = None
        return True

    def upload_seen(self, now: float) -> None:
        """Any output file arrived (HLS here; the origin reports DASH segments and screenshots)."""
        if self.public_since is None:
            self.private_upload_at = now

    def began_public(self, uploaded_at: float, duration: float, program_date_time: Optional[datetime] = None) -> bool:
        """Whether a file uploaded at ``uploaded_at`` and holding ``duration`` seconds began while public."""
        if self.public_since is None:
            return False
        if uploaded_at - duration - PUBLIC_MARGIN_SECONDS < self.public_since:
            return False
        return (
            program_date_time is None or self.public_since_wall is None or program_date_time >= self.public_since_wall
        )

    def public_file(self, stored: str) -> bool:
        """Whether viewers without a token may get this stored HLS file (segment or init)."""
        return self.visibility.get(stored, False)

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
        self.visibility[seg.path] = seg.public
        if seg.init:
            self.visibility[seg.init] = True  # codec headers only, shared by private and public segments

    @staticmethod
    def _continue_after(r: Rendition, seg: Segment) -> None:
        r.last = seg
        r.next_sequence = seg.sequence + 1
        r.discontinuity = seg.discontinuity
        if seg.public:
            r.last_public = seg
            r.next_public_sequence = seg.public_sequence + 1
            r.public_discontinuity = seg.public_discontinuity

    def keeps(self, path: str) -> bool:
        """Whether a transcoder DELETE of ``path`` must be ignored: the DVR still serves it."""
        return self._protected(path)

    def forget(self, path: str) -> None:
        """The upstream file ``path`` was deleted on the transcoder's request."""
        self.fresh.pop(path, None)
        if self.latest.get(path) == path:
            del self.latest[path]
        self.pending_delete.pop(path, None)
        self.visibility.pop(path, None)

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
            while r.parts:
                self._release_parts(r.parts.popleft().parts, 0.0)
            r.revision += 1
        doomed = [p for p in self.pending_delete if not self.refs.get(p) and not self._is_current_init(p)]
        for p in doomed:
            del self.pending_delete[p]
            self.visibility.pop(p, None)
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
                    self.visibility.pop(path, None)
        return doomed

    # ------------------------------------------------------------------------- persistence
    def drain_journal(self) -> list[dict]:
        records, self.journal = self.journal, []
        return records

    def snapshot(self) -> list[dict]:
        """Records that rebuild the current index from nothing (to compact a journal)."""
        records: list[dict] = []
        for r in self.renditions.values():
            records.append(
                {"op": "meta", "p": r.path, "td": r.target_duration, "v": r.version, "ind": r.independent_segments}
            )
            # The viewers' numbering goes on from their last segment, even one no longer in the window.
            if r.last_public is not None and (not r.segments or r.last_public.sequence < r.segments[0].sequence):
                records.append({"op": "cont", "p": r.path, "s": _encode(r.last_public)})
            records += [{"op": "add", "p": r.path, "s": _encode(seg)} for seg in r.segments]
            if not r.segments and r.last is not None and r.last is not r.last_public:
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
                    r.target_duration, r.version, r.independent_segments = (
                        int(record["td"]),
                        int(record["v"]),
                        bool(record["ind"]),
                    )
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

    # ------------------------------------------------------------------------- replicas
    def replica_state(self) -> dict:
        """All a replica needs to continue from this index with the same numbering (``adopt``).

        The journal's snapshot plus what it leaves out because a restart rebuilds it from the next
        uploads: the uploads not indexed yet (``fresh``: a playlist will list them), where every
        upstream file was stored, the LL-HLS parts, and whether new segments are public. A replica
        that rebuilt these from uploads it partly missed would number or list them differently.
        """
        renditions = {}
        for path, r in self.renditions.items():
            renditions[path] = {
                "partTarget": r.part_target,
                "parts": [[entry.sequence, [_encode_part(p) for p in entry.parts]] for entry in r.parts],
                "open": [_encode_part(p) for p in r.open_parts],
                "openPublic": r.open_public,
                "hint": r.hint,
            }
        return {
            "records": self.snapshot(),
            "fresh": list(self.fresh),
            "latest": dict(self.latest),
            "public": self.public_since is not None,
            "renditions": renditions,
        }

    def adopt(self, state: dict, now: float) -> None:
        """Become the index ``replica_state`` described (on a fresh Dvr). Raises KeyError,
        TypeError or ValueError on a state this version cannot read: the caller tries another peer."""
        if self.replay(state["records"], now):
            raise ValueError("the peer's DVR snapshot has records this origin cannot read")
        self.latest.update({str(k): str(v) for k, v in state["latest"].items()})
        for up in state["fresh"]:
            self.fresh[str(up)] = now
        if state["public"]:
            self.public_since, self.public_since_wall = float("-inf"), None
        else:
            self.public_since = self.public_since_wall = None
        for path, ll in state["renditions"].items():
            r = self._rendition(path)
            r.part_target = None if ll["partTarget"] is None else float(ll["partTarget"])
            for sequence, parts in ll["parts"]:
                seg = next((s for s in r.segments if s.sequence == int(sequence)), None)
                if seg is None:
                    continue  # slid out of the window since (a shorter window here)
                decoded = tuple(_decode_part(p) for p in parts)
                self._hold_parts(decoded, seg.public)
                r.parts.append(SegmentParts(seg.sequence, decoded))
            r.open_parts = tuple(_decode_part(p) for p in ll["open"])
            r.open_public = bool(ll["openPublic"])
            self._hold_parts(r.open_parts, r.open_public)
            r.hint = str(ll["hint"]) if ll["hint"] else None
            r.revision += 1

    def recent(self, count: int = RECENT_SEGMENTS) -> dict[str, list[list]]:
        """The last ``count`` segments of each rendition as peers compare them (``behind``):
        ``[stored path, sequence, public, public sequence]``."""
        return {
            path: [[seg.path, seg.sequence, seg.public, seg.public_sequence] for seg in list(r.segments)[-count:]]
            for path, r in self.renditions.items()
        }

    def received_while_adopting(self, path: str, stored: str, now: float) -> None:
        """An upload that reached this replica while it copied a peer's index: fresh unless the
        copied index already holds it (the peer indexed it before answering)."""
        if self.refs.get(self.latest.get(path, stored)) or self.refs.get(stored):
            return
        self.latest[path] = stored
        self.fresh.pop(path, None)
        self.fresh[path] = now

    def stored_files(self) -> set[str]:
        """Every stored path the index references (segments, inits, parts) or will index (fresh)."""
        files = set(self.refs)
        files.update(self.latest.get(up, up) for up in self.fresh)
        return files

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

    def render(
        self, path: str, ended: bool, query: str = "", public: bool = False, skip: bool = False
    ) -> Optional[str]:
        """The media playlist; ``public``: the viewers' one, made of the public segments only;
        ``skip``: an LL-HLS delta update (``_HLS_skip=YES``) when the playlist is long enough."""
        r = self.renditions.get(path)
        if r is None or not r.segments:
            return None
        segments = [seg for seg in r.segments if seg.public] if public else r.segments
        if not segments:
            return None
        siblings = self._siblings(r) if r.low_latency else []
        if query:
            return render_playlist(r, segments, ended, query, public, skip, self._reports(r, siblings, public))
        # Every viewer reloads the same playlist each target duration (each part, with LL-HLS), and
        # a 4 h window is thousands of lines: render once per change.
        key = (r.revision, ended, tuple(s.revision for s in siblings))
        cached = self._rendered.get((path, public, skip))
        if cached is None or cached[0] != key:
            text = render_playlist(
                r, segments, ended, public=public, skip=skip, reports=self._reports(r, siblings, public)
            )
            cached = self._rendered[(path, public, skip)] = (key, text)
        return cached[1]

    def join_targets(self, master: str, public: bool, now: float) -> dict[str, int]:
        """Media playlist → its last media sequence number now, for each rendition of ``master``
        whose next segment a viewer asking for ``master`` should wait for; empty when waiting gains nothing.

        Stock hls.js starts three target durations behind the end of the first media playlist it
        loads, counting the end's age from its own load, and keeps that distance (it changes the
        playback rate only in low-latency mode). The time since the last segment was listed, up to a
        segment, thus stays in a viewer's latency for good, half a segment on average. Answering the
        master when the next segment is listed makes every viewer start on a fresh edge: the same
        latency for all, at most a segment more startup. Not for LL-HLS (clients sync to parts), a
        segment listed a moment ago, or a stream that is not flowing.
        """
        family = posixpath.dirname(master)
        renditions = [r for p, r in self.renditions.items() if posixpath.dirname(posixpath.dirname(p)) == family]
        if not renditions or any(r.low_latency for r in renditions):
            return {}
        targets: dict[str, int] = {}
        newest = None
        for r in renditions:
            edge = live_edge(r, public)
            newest_seen = r.last_public if public else r.last
            if edge is None or r.listed_at is None or newest_seen is not r.last:
                return {}  # nothing listed for this view yet, or its newest segment is not for it
            targets[r.path] = edge.last_msn
            newest = r.listed_at if newest is None else max(newest, r.listed_at)
        assert newest is not None
        target_duration = max(r.target_duration for r in renditions)
        phase = (now - newest) / target_duration
        return targets if JOIN_HOLD_MIN_PHASE <= phase <= JOIN_HOLD_MAX_PHASE else {}

    def _siblings(self, r: Rendition) -> list[Rendition]:
        """The other renditions of the same master (``hls/cmaf/<rung>/index.m3u8``): rendition reports."""
        family = posixpath.dirname(posixpath.dirname(r.path))
        return [
            other
            for p, other in sorted(self.renditions.items())
            if other is not r and other.segments and posixpath.dirname(posixpath.dirname(p)) == family
        ]

    def _reports(self, r: Rendition, siblings: list[Rendition], public: bool) -> list[tuple[str, "Edge"]]:
        reports = []
        for other in siblings:
            edge = live_edge(other, public)
            if edge is not None:
                reports.append((relative_uri(r.path, other.path), edge))
        return reports

    def wait_state(self, path: str, public: bool, msn: int, part: Optional[int], ended: bool) -> str:
        """``ready``, ``wait`` or ``bad`` for a blocking reload of ``path`` (RFC 8216bis 6.2.5.2)."""
        r = self.renditions.get(path)
        edge = live_edge(r, public) if r is not None else None
        if edge is None:
            return "wait"  # nothing playable yet: the first segment is the answer
        if ended:
            return "ready"
        if msn > edge.last_msn + BLOCK_AHEAD_SEGMENTS:
            return "bad"
        if msn <= edge.last_msn:
            return "ready"
        if part is None:
            return "wait"
        if msn == edge.open_msn and part < edge.open_parts:
            return "ready"
        assert r is not None
        target = r.part_target or r.target_duration
        per_segment = max(1, round((edge.last_duration or r.target_duration) / target))
        # Parts from the last one listed to the one asked for.
        have = edge.open_parts if edge.open_msn is not None else 0
        ahead = (msn - edge.last_msn - 1) * per_segment + part + 1 - have
        return "bad" if ahead * target > max(BLOCK_AHEAD_SECONDS, 3 * target) + 1e-6 else "wait"


def behind(ours: dict[str, list[list]], theirs: dict[str, list[list]]) -> Optional[str]:
    """Why this replica's index is behind a peer's (``recent`` of each), None if it is not.

    Replicas fed the same uploads number alike; one that missed an upload numbers what follows
    lower, and one made public a moment later has a segment private that the other has public.
    Both sides see the same difference and only the one with the smaller numbers says it is
    behind, so exactly one copies the other (``replicas.Replicas.watch``).
    """
    for path, segments in ours.items():
        peer = {entry[0]: entry[1:] for entry in theirs.get(path, ())}
        for stored, *mine in segments:
            other = peer.get(stored)
            if other is not None and [int(mine[0]), bool(mine[1]), int(mine[2])] < [
                int(other[0]),
                bool(other[1]),
                int(other[2]),
            ]:
                return f"{stored} is #{mine[0]} ({'public' if mine[1] else 'private'}) here, #{other[0]} ({'public' if other[1] else 'private'}) there"
    return None


@dataclass(frozen=True)
class Edge:
    """Where a rendition's playlist ends, in the numbering of the view (viewers' or members')."""

    last_msn: int  # the last complete segment
    last_parts: int  # its parts still listed
    last_duration: float
    open_msn: Optional[int]  # the segment being written, when its parts are listed
    open_parts: int

    @property
    def report(self) -> tuple[int, Optional[int]]:
        """LAST-MSN and LAST-PART of an EXT-X-RENDITION-REPORT."""
        if self.open_msn is not None and self.open_parts:
            return self.open_msn, self.open_parts - 1
        return self.last_msn, (self.last_parts - 1 if self.last_parts else None)


def live_edge(r: Rendition, public: bool) -> Optional[Edge]:
    last = (
        next((seg for seg in reversed(r.segments) if seg.public), None)
        if public
        else (r.segments[-1] if r.segments else None)
    )
    if last is None:
        return None
    last_msn = last.public_sequence if public else last.sequence
    show_open = (
        r.low_latency
        and bool(r.open_parts)
        and (r.open_public or not public)
        and (not public or last is r.segments[-1])
    )
    return Edge(
        last_msn,
        len(r.parts_of(last.sequence)) if r.low_latency else 0,
        last.duration,
        last_msn + 1 if show_open else None,
        len(r.open_parts) if show_open else 0,
    )


def _encode(seg: Segment) -> list:
    return [
        seg.path,
        seg.duration,
        seg.sequence,
        seg.discontinuity,
        seg.init,
        seg.program_date_time.isoformat() if seg.program_date_time else None,
        seg.upstream_sequence,
        seg.public,
        seg.public_sequence,
        seg.public_discontinuity,
    ]


def _decode(raw: list) -> Segment:
    path, duration, sequence, discontinuity, init, pdt, upstream = raw[:7]
    if len(raw) > 7:
        public, public_sequence, public_discontinuity = bool(raw[7]), int(raw[8]), int(raw[9])
    else:  # journaled before segments could be private: every one was public, numbered alike
        public, public_sequence, public_discontinuity = True, int(sequence), int(discontinuity)
    return Segment(
        str(path),
        float(duration),
        int(sequence),
        int(discontinuity),
        str(init) if init else None,
        datetime.fromisoformat(pdt) if pdt else None,
        int(upstream),
        public,
        public_sequence,
        public_discontinuity,
    )


def _encode_part(part: Part) -> list:
    return [part.path, part.upstream, part.duration, part.independent]


def _decode_part(raw: list) -> Part:
    return Part(str(raw[0]), str(raw[1]), float(raw[2]), bool(raw[3]))


def render_playlist(
    r: Rendition,
    segments: Iterable[Segment],
    ended: bool,
    query: str = "",
    public: bool = False,
    skip: bool = False,
    reports: Iterable[tuple[str, Edge]] = (),
) -> str:
    segments = list(segments)
    first = segments[0]
    suffix = f"?{query}" if query else ""
    has_map = any(s.init for s in segments)
    low_latency = r.part_target is not None and not ended
    edge = live_edge(r, public) if low_latency else None

    def period(seg: Segment) -> int:
        return seg.public_discontinuity if public else seg.discontinuity

    version = max(r.version, 6 if has_map else 3)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{max(version, 9) if low_latency else version}",
        f"#EXT-X-TARGETDURATION:{r.target_duration}",
    ]
    skipped = 0
    if low_latency:
        assert r.part_target is not None
        skip_until = SKIP_TARGET_DURATIONS * r.target_duration
        lines.append(
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until:.1f},"
            f"PART-HOLD-BACK={PART_HOLD_BACK_PART_TARGETS * r.part_target:.3f}"
        )
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={r.part_target:.3f}")
        if skip:
            # A segment may be left out when it ended at least CAN-SKIP-UNTIL before the playlist does.
            remaining = sum(seg.duration for seg in segments)
            for seg in segments[:-1]:
                remaining -= seg.duration
                if remaining < skip_until - 1e-6:
                    break
                skipped += 1
    lines += [
        f"#EXT-X-MEDIA-SEQUENCE:{first.public_sequence if public else first.sequence}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{period(first)}",
    ]
    if r.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    prev: Optional[Segment] = segments[skipped - 1] if skipped else None
    for i, seg in enumerate(segments[skipped:]):
        new_period = prev is not None and period(seg) != period(prev)
        if new_period:
            lines.append("#EXT-X-DISCONTINUITY")
        # Each discontinuity repeats its EXT-X-MAP, even an unchanged one: a player joining or
        # seeking into that period must not guess which init applies. So does the first segment
        # of a delta update, whose client may have dropped the skipped ones.
        if seg.init and (i == 0 or new_period or prev is None or seg.init != prev.init):
            lines.append(map_tag(f"{relative_uri(r.path, seg.init)}{suffix}"))
        if seg.program_date_time is not None:
            lines.append(pdt_tag(seg.program_date_time))
        if low_latency:
            lines += _part_lines(r, r.parts_of(seg.sequence), suffix)
        lines.append(extinf_tag(seg.duration))
        lines.append(f"{relative_uri(r.path, seg.path)}{suffix}")
        prev = seg
    if ended:
        lines.append("#EXT-X-ENDLIST")
    elif edge is not None:
        if edge.open_msn is not None:
            lines += _part_lines(r, r.open_parts, suffix)
        if r.hint and (edge.open_msn is not None or not r.open_parts) and segments[-1] is r.segments[-1]:
            lines.append(preload_hint_tag(f"{relative_uri(r.path, r.hint)}{suffix}"))
        for uri, other in reports:
            msn, part = other.report
            lines.append(
                f'#EXT-X-RENDITION-REPORT:URI="{uri}{suffix}",LAST-MSN={msn}'
                + (f",LAST-PART={part}" if part is not None else "")
            )
    return "\n".join(lines) + "\n"


def _part_lines(r: Rendition, parts: Iterable[Part], suffix: str) -> list[str]:
    return [part_tag(f"{relative_uri(r.path, part.path)}{suffix}", part.duration, part.independent) for part in parts]
