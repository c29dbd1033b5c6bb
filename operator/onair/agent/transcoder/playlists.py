"""The public HLS playlists, made from ffmpeg's per-run ones.

ffmpeg's hls muxer knows one run only: after a restart it starts a fresh playlist, rewrites the
init segment and would end the old one with ENDLIST. Viewers need one playlist that outlives
runs, so the packager keeps its own per rendition:

* media sequence numbers only grow; a new run starts with ``EXT-X-DISCONTINUITY`` and its own
  ``EXT-X-MAP`` (every file name carries the run id, so nothing is ever overwritten);
* ``EXT-X-PROGRAM-DATE-TIME`` on every segment: when its first frame was received (``pdt``),
  never before the previous segment's end; without that, contiguous while the encoder keeps up
  and moved forward to the wall clock after an outage (media time stood still, real time did not);
* ``EXT-X-ENDLIST`` only when the broadcast is stopped on purpose, never on a source switch
  (sources are spliced inside one run and need no tag at all) nor on an encoder crash;
* a short window (the origin keeps the DVR), ``EXT-X-DISCONTINUITY-SEQUENCE`` kept right as
  discontinuities slide out of it;
* low-latency HLS: the partial segments of the last few segments (``EXT-X-PART`` before their
  ``EXTINF``), the parts of the segment still being cut after the last one (under its run's
  ``EXT-X-MAP``), ``EXT-X-PART-INF`` and the next part as ``EXT-X-PRELOAD-HINT``. The origin
  reads them to serve LL-HLS (``onair.agent.origin.dvr``).

Pure: parse text (``onair.agent.hls``), render text; the packager does the I/O.
"""

from __future__ import annotations

import posixpath
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from onair.agent.hls import (
    extinf_tag,
    map_tag,
    parse_media_playlist,
    part_tag,
    pdt_tag,
    preload_hint_tag,
    target_duration_for,
)

# Media time running this far behind the wall clock means an outage, not jitter.
PDT_RESYNC_SECONDS = 1.0
# A given date this far before the previous segment's end is an overlap, not rounding.
PDT_OVERLAP_SECONDS = 0.002
# Parts are listed for this many of the last segments: the origin keeps what its part window needs.
PART_SEGMENTS_LISTED = 4


@dataclass(frozen=True)
class Part:
    uri: str  # relative to the media playlist
    duration: float
    independent: bool


@dataclass(frozen=True)
class Entry:
    uri: str  # relative to the media playlist
    duration: float
    run_id: str
    init: Optional[str]
    program_date_time: datetime
    discontinuity: bool
    parts: tuple[Part, ...] = ()


class MediaPlaylist:
    """One public media playlist (one rendition of one packaging)."""

    def __init__(self, window: int, version: int) -> None:
        self.window = window
        self.version = version
        self.entries: deque[Entry] = deque()
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.ended = False
        self._last: Optional[Entry] = None  # survives the window: continuity with what comes next
        self._target = 1
        # LL-HLS: set while parts are cut (None: a plain playlist).
        self.part_target: Optional[float] = None
        self.open_parts: list[Part] = []  # of the segment being cut
        self.open_init: Optional[str] = None  # its EXT-X-MAP
        self.preload_hint: Optional[str] = None

    def add(
        self,
        uri: str,
        duration: float,
        run_id: str,
        init: Optional[str],
        seen_at: datetime,
        parts: tuple[Part, ...] = (),
        program_date_time: Optional[datetime] = None,
    ) -> list[Entry]:
        """Append a finished segment; returns the entries that slid out of the window.

        ``program_date_time``: when its first frame was received (``pdt``). Without it the date
        is worked out from ``seen_at``, when the segment appeared: a segment's duration later.
        Either way dates never go back: a date before the previous segment's end (a new run
        replaying frames the last one had shown) is moved to that end.
        """
        last = self._last
        self.ended = False
        discontinuity = last is not None and (last.run_id != run_id or last.init != init)
        follows = last.program_date_time + timedelta(seconds=last.duration) if last is not None else None
        if program_date_time is not None:
            pdt = program_date_time
            if follows is not None and (follows - pdt).total_seconds() > PDT_OVERLAP_SECONDS:
                pdt = follows
        else:
            observed = seen_at - timedelta(seconds=duration)
            pdt = observed
            if follows is not None and (observed - follows).total_seconds() <= PDT_RESYNC_SECONDS:
                pdt = follows
        entry = Entry(uri, duration, run_id, init, pdt, discontinuity, parts)
        self.entries.append(entry)
        self._last = entry
        self._target = max(self._target, target_duration_for(duration))
        removed = []
        while len(self.entries) > self.window:
            gone = self.entries.popleft()
            self.media_sequence += 1
            # Once first, an entry's tag is no longer rendered: the sequence number carries it.
            if self.entries and self.entries[0].discontinuity:
                self.discontinuity_sequence += 1
            removed.append(gone)
        return removed

    def plan_segments(self, seconds: float) -> None:
        """The encoder cuts segments of about ``seconds``: the target duration they need, set before
        the first is listed. RFC 8216 forbids changing it, so a short first segment (a run starting
        mid-GOP) must not publish a smaller one that the next segments would then have to raise."""
        self._target = max(self._target, target_duration_for(seconds))

    @property
    def target_duration(self) -> int:
        return self._target

    def end(self) -> None:
        self.ended = True
        self.open_parts, self.preload_hint = [], None

    @classmethod
    def resume(cls, text: str, window: int, version: int) -> "MediaPlaylist":
        """A playlist this packager published before (the pod restarted): carry on from it.

        Sequence numbers continue, as does its target duration, its segments stay listed until
        they slide out, and whatever comes next is a new run, hence a discontinuity. Its ENDLIST (if any) is dropped by the
        next segment, like after any stop.
        """
        playlist = cls(window, version)
        parsed = parse_media_playlist(text)
        playlist.media_sequence = parsed.media_sequence
        playlist.discontinuity_sequence = parsed.discontinuity_sequence
        playlist.ended = parsed.endlist
        # What players were told stays: RFC 8216 forbids a target duration that changes.
        playlist._target = max(playlist._target, parsed.target_duration)
        pdt: Optional[datetime] = None
        runs = 0
        for segment in parsed.segments:
            pdt = segment.program_date_time or pdt
            if pdt is None:
                continue
            if segment.discontinuity:
                runs += 1
            # The run id only has to differ between runs: the old ones are named by position.
            entry = Entry(
                segment.uri,
                segment.duration,
                f"resumed-{runs}",
                segment.map_uri,
                pdt,
                segment.discontinuity and bool(playlist.entries),
            )
            playlist.entries.append(entry)
            playlist._last = entry
            playlist._target = max(playlist._target, target_duration_for(segment.duration))
            pdt = pdt + timedelta(seconds=segment.duration)
        while len(playlist.entries) > window:
            playlist.entries.popleft()
            playlist.media_sequence += 1
            if playlist.entries and playlist.entries[0].discontinuity:
                playlist.discontinuity_sequence += 1
        return playlist

    @property
    def last(self) -> Optional[Entry]:
        return self._last

    def render(self) -> str:
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{self.version}",
            f"#EXT-X-TARGETDURATION:{self._target}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        if self.part_target is not None:
            lines.insert(3, f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.6f}")
        current_init: Optional[str] = None
        with_parts = len(self.entries) - PART_SEGMENTS_LISTED
        for i, entry in enumerate(self.entries):
            if entry.discontinuity and i > 0:
                lines.append("#EXT-X-DISCONTINUITY")
            if entry.init and (i == 0 or entry.init != current_init):
                lines.append(map_tag(entry.init))
            current_init = entry.init
            lines.append(pdt_tag(entry.program_date_time))
            if self.part_target is not None and i >= with_parts:
                lines += [part_tag(part.uri, part.duration, part.independent) for part in entry.parts]
            lines.append(extinf_tag(entry.duration))
            lines.append(entry.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        elif self.part_target is not None:
            if self.open_parts and self.open_init and self.open_init != current_init:
                lines.append(map_tag(self.open_init))  # a new run's first parts
            lines += [part_tag(part.uri, part.duration, part.independent) for part in self.open_parts]
            if self.preload_hint:
                lines.append(preload_hint_tag(self.preload_hint))
        return "\n".join(lines) + "\n"


def public_master(text: str, run_id: str, playlist_name: str = "index.m3u8") -> str:
    """ffmpeg's master of one run, pointing at the public media playlists instead."""
    out: list[str] = []
    suffix = f"/{run_id}.m3u8"
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and line.endswith(suffix):
            line = posixpath.join(posixpath.dirname(line), playlist_name)
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"
