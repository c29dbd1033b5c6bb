"""Publishes what the encoder writes into its working directory, in an order players can trust.

ffmpeg writes every file under a temporary name and renames it when complete; the packager
scans the directory when inotify says it changed (and on a slow timer as a backstop) and, per
scan, sends new segments and init segments first, then the media
playlists that list them, then master playlists and manifests, so the origin never serves a
playlist naming a file it does not have.

* HLS (CMAF and MPEG-TS): public playlists are the packager's own (see ``playlists``);
  ffmpeg's per-run playlists are only read. Uploaded segments are removed from local disk; ones
  that slid out of the live window are deleted from the destination a few segments later (a
  player that loaded the previous playlist may still be fetching them).
* DASH: ffmpeg's manifest is published as ``dash/manifest.mpd``; files are mirrored (uploaded
  when they appear, deleted when ffmpeg deletes them); a new run starts a new manifest and the
  previous run's files are deleted after a grace period.
* ``screenshot.jpg`` is sent whenever ffmpeg replaces it.
* Low-latency HLS (a run with ``part_seconds``): each file ffmpeg's CMAF muxer writes is a part
  (one CMAF fragment). It is PUT the moment it appears, then the playlist listing it, so parts
  reach the origin as they are produced; it is kept in memory until its segment closes. A segment
  closes when the next part starting with a keyframe arrives (read from the fragment, ``fmp4``):
  its parts' bytes, concatenated, are PUT as the segment that plain HLS clients and the DVR use.
  Parts are never deleted from here: the origin drops them once they leave its part window.
* Low-latency DASH (the same runs): ffmpeg's dash muxer appends each CMAF chunk to the segment's
  ``.tmp`` file as it makes it. One follower per representation streams that growing file to the
  origin in a single chunked PUT, chunk by chunk, ending when ffmpeg renames the file into place
  (it closes it first: everything is written), then follows the next segment. A stream that
  fails is not retried (its body is gone): the mirror publishes the finished file instead.
  The MPD's ``availabilityStartTime`` is ffmpeg's clock when the first frame reached its muxer, so
  it keeps for good whatever the encoder's start-up cost that one frame (probing, first decode),
  and players hold that much more latency all session long. When a segment's first chunk is seen
  earlier than that anchor promises, the anchor published is moved back to match (never later,
  never more than a segment), so players ask for each segment when its first chunk exists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Optional, Sequence

from onair.agent.hls import PlaylistError, Segment, parse_media_playlist

from . import ffmpeg_args as fa
from . import fmp4
from .dirwatch import DirWatch
from .mpegts import CLOCK, first_video_decode_time, sdiff
from .pdt import ProgramDateTimes
from .playlists import Entry, MediaPlaylist, Part, public_master
from .sinks import Sink, SinkError

log = logging.getLogger("onair.transcoder.packager")

HLS_KINDS = ("cmaf", "ts")
DELETE_LAG_SEGMENTS = 4
OLD_RUN_GRACE_SECONDS = 30.0
# Steady state: a segment waits on average half of this before it is published (wake-ups cost
# CPU; bench/transcoder_cpu.py counts them against the 3 % budget).
POLL_SECONDS = 0.25
# With inotify (``dirwatch``) the packager scans when ffmpeg has finished a file: a short pause
# first gathers the burst (every rung cuts its segment at the same moment), and a scan every
# few seconds regardless covers anything a watch could miss.
SETTLE_SECONDS = 0.03
WATCH_SAFETY_SECONDS = 2.0
# From a run's start until its first segments and masters are out, viewers are waiting for the
# stream to start: look more often (bounded, in case the run never produces anything).
FIRST_SEGMENT_POLL_SECONDS = 0.02
FIRST_SEGMENT_FAST_SECONDS = 15.0
# LL-HLS: a segment without a keyframe part for this many segment durations means ffmpeg's parts
# and keyframes do not line up; it is closed anyway (logged) so plain HLS goes on.
MAX_SEGMENT_WITHOUT_KEYFRAME = 3
# A segment's first frame is dated from its first fragment or PES: its head holds them.
SEGMENT_HEAD_BYTES = 64 * 1024
# LL-DASH: how often a follower looks for new bytes in a segment being written (each look is a
# read of a few bytes at most; a part lasts 200 ms or more).
FOLLOW_POLL_SECONDS = 0.025
# A segment file that stops growing for this many segment durations belongs to an encoder that
# died mid-segment: its stream is ended (aborted), so the origin does not hold viewers for it.
FOLLOW_STALL_SEGMENTS = 3.0
FOLLOW_READ_BYTES = 256 * 1024
_AVAILABILITY_START = re.compile(rb'availabilityStartTime="([^"]+)"')
# The anchor moves only for a gain worth a republished MPD (players re-anchor on it).
ANCHOR_STEP_SECONDS = 0.02
PUBLIC_PLAYLIST = "index.m3u8"
MASTER = "master.m3u8"
DASH_MANIFEST = "dash/manifest.mpd"


@dataclass
class _Rendition:
    kind: str
    rung: str
    playlist: MediaPlaylist
    seen: set[str] = field(default_factory=set)  # local URIs of the current run already handled
    inits: set[str] = field(default_factory=set)  # init URIs already published
    trash: deque[Entry] = field(default_factory=deque)  # out of the window, not yet deleted
    resumed: bool = False  # looked for a playlist a previous process left
    # (path, inode, mtime_ns, size) of ffmpeg's playlist when it was last fully handled: unchanged,
    # it has nothing new, so most scans cost a stat instead of a read and a parse.
    handled: Optional[tuple[Path, int, int, int]] = None
    # LL-HLS: the parts of the segment being cut, with their bytes (the segment is made of them),
    # whether each reached the destination, and when the last one arrived.
    open_parts: list[tuple[Part, bytes, bool]] = field(default_factory=list)
    open_init: Optional[str] = None
    last_part_at: Optional[datetime] = None
    init_info: dict[str, fmp4.InitInfo] = field(default_factory=dict)
    warned_unaligned: bool = False
    open_start: Optional[float] = None  # media time of the segment being cut (LL-HLS)
    media_ref: Optional[tuple[int, int]] = None  # MPEG-TS: (raw, unwrapped) decode time of the last segment
    pdt_fallback_run: Optional[str] = None  # the run whose dates fell back to arrival (logged once)

    @property
    def base(self) -> str:
        return f"hls/{self.kind}/{self.rung}"


def _dash_init_written(init: str, present: set[str]) -> bool:
    """Whether ffmpeg has filled the init segment ``dash/<run>_init_<rep>.m4s``.

    Its dash muxer creates every init file when it starts and writes into it only with the first
    fragment of that representation, so an init is complete once a media segment of its
    representation (``<run>_<rep>_<number>.m4s``) has been renamed into place. Published any
    earlier, the file would be empty, and a published file is never sent again."""
    run, _, rep = init.removesuffix(".m4s").rpartition("_init_")
    prefix = f"{run}_{rep}_"
    return any(name.startswith(prefix) for name in present)


@dataclass
class PackagerStats:
    segments: dict[str, int] = field(default_factory=dict)
    upload_errors: int = 0
    last_segment_at: Optional[datetime] = None


def _next_part(uri: str) -> Optional[str]:
    """The name ffmpeg gives the part after ``uri`` (``<run>_%06d.m4s``)."""
    stem, dot, ext = uri.rpartition(".")
    prefix, _, number = stem.rpartition("_")
    if not number.isdigit():
        return None
    return f"{prefix}_{int(number) + 1:0{len(number)}d}{dot}{ext}"


class Packager:
    def __init__(
        self,
        work_dir: Path,
        sink: Sink,
        *,
        kinds: Sequence[str] = HLS_KINDS,
        dash: bool = True,
        window: int = 8,
        on_segment: Optional[Callable[[str], None]] = None,
        on_error: Optional[Callable[[], None]] = None,
        dates: Optional[ProgramDateTimes] = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        # When each segment's first frame was received (None: dated when the segment appears).
        self.dates = dates
        self.sink = sink
        self.kinds = tuple(kinds)
        self.dash = dash
        self.window = window
        self.on_segment = on_segment
        self.on_error = on_error
        self.stats = PackagerStats()
        self.run_id: Optional[str] = None
        self.rungs: list[str] = []
        self.part_seconds: Optional[float] = None  # LL-HLS parts in the current run's CMAF output
        self.segment_seconds = 2.0
        self.renditions: dict[tuple[str, str], _Rendition] = {}
        self._masters_sent: set[str] = set()  # kinds whose master of the current run is out
        # Published DASH files, by name -> when ffmpeg renamed it into place (its listing order).
        # A name, once there, is final: ffmpeg writes each file under .tmp and renames it.
        self._dash_files: dict[str, float] = {}
        self._dash_manifest: Optional[tuple[float, int]] = None
        self._dash_dirty = True  # the directory may hold files not yet published: list it
        self._dash_dir: Optional[int] = None  # mtime_ns of the directory when last fully listed
        self._dash_old: dict[str, float] = {}  # file -> delete after (monotonic)
        # LL-DASH: representation (file name without its number) -> the task streaming its segments,
        # and the segments being streamed right now (the mirror leaves them alone).
        self._dash_followers: dict[str, asyncio.Task] = {}
        self._dash_streaming: set[str] = set()
        # LL-DASH: the earliest availabilityStartTime the current run's first chunks allow (Unix seconds).
        self._dash_anchor: Optional[float] = None
        self._screenshot: Optional[tuple[float, int]] = None
        self._screenshot_error: Optional[str] = None
        self._run_started = 0.0
        self._lock = asyncio.Lock()
        self._watch: Optional[DirWatch] = None
        self._watching = True  # False once inotify failed: poll from then on

    # ------------------------------------------------------------------------- runs
    def begin_run(
        self, run_id: str, rungs: Sequence[str], part_seconds: Optional[float] = None, segment_seconds: float = 2.0
    ) -> None:
        """A new encoder process starts writing with this run id and these renditions; with
        ``part_seconds`` its CMAF files are LL-HLS parts of ``segment_seconds`` segments."""
        self.run_id = run_id
        if self.dates is not None:
            self.dates.begin_run(run_id)
        self.rungs = list(rungs)
        self.part_seconds = part_seconds
        self.segment_seconds = segment_seconds
        self._masters_sent = set()
        self._run_started = time.monotonic()
        self._dash_manifest = None
        self._dash_dirty = True
        self._dash_anchor = None
        for kind in self.kinds:
            for rung in self.rungs:
                key = (kind, rung)
                if key not in self.renditions:
                    self.renditions[key] = _Rendition(
                        kind, rung, MediaPlaylist(self.window, version=7 if kind == "cmaf" else 6)
                    )
                self.renditions[key].seen = set()
                self.renditions[key].playlist.plan_segments(segment_seconds)
        # Renditions of an earlier ladder that this run does not produce end cleanly.
        for key, rendition in self.renditions.items():
            if key[1] not in self.rungs and not rendition.playlist.ended:
                rendition.playlist.end()
        self._watch_directories()
        deadline = time.monotonic() + OLD_RUN_GRACE_SECONDS
        for name in self._dash_files:
            if not name.startswith(f"dash/{run_id}_"):
                self._dash_old.setdefault(name, deadline)

    async def finish(self, ended: bool) -> None:
        """The encoder exited: publish what it left; with ``ended`` (broadcast stopped on
        purpose) close every playlist with ENDLIST."""
        # The last DASH segments, renamed into place as ffmpeg exited, finish streaming first.
        deadline = time.monotonic() + FOLLOW_STALL_SEGMENTS * self.segment_seconds
        while self._dash_streaming and time.monotonic() < deadline:
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
        await self.sync()
        async with self._lock:
            # What was cut of the last segment is a segment too: nothing the encoder made is lost.
            for rendition in self.renditions.values():
                if rendition.open_parts:
                    await self._close_segment(rendition)
                    if not ended:
                        rendition.playlist.preload_hint = None
                        await self._put(f"{rendition.base}/{PUBLIC_PLAYLIST}", rendition.playlist.render().encode())
        if not ended:
            return
        async with self._lock:
            for rendition in self.renditions.values():
                if not rendition.playlist.ended and rendition.playlist.entries:
                    rendition.playlist.end()
                    await self._put(f"{rendition.base}/{PUBLIC_PLAYLIST}", rendition.playlist.render().encode())

    # ------------------------------------------------------------------------- scanning
    def _watch_directories(self) -> None:
        """Every directory ffmpeg writes this run's files into, watched (made if missing)."""
        if not self._watching:
            return
        directories = [self.work_dir]
        if self.dash:
            directories.append(self.work_dir / "dash")
        for kind in self.kinds:
            directories.append(self.work_dir / "hls" / kind)
            directories += [self.work_dir / "hls" / kind / rung for rung in self.rungs]
        try:
            if self._watch is None:
                self._watch = DirWatch()
            self._watch.add(directories)
        except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify
            log.info("cannot watch %s for new files (%s): the packager polls instead", self.work_dir, exc)
            if self._watch is not None:
                self._watch.close()
            self._watch, self._watching = None, False

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.sync()
                except Exception:  # a packaging bug must not stop publishing for good
                    log.exception("packager scan failed")
                await self._wait(stop)
        finally:
            if self._watch is not None:
                self._watch.close()
                self._watch = None

    async def _wait(self, stop: asyncio.Event) -> None:
        watch = self._watch
        if watch is None:
            try:
                await asyncio.wait_for(stop.wait(), self.poll_seconds(time.monotonic()))
            except asyncio.TimeoutError:
                pass
            return
        if await watch.wait(WATCH_SAFETY_SECONDS, stop) and not stop.is_set():
            await asyncio.sleep(SETTLE_SECONDS)
            watch.drain()  # the rest of the burst: this one scan covers it

    def poll_seconds(self, now: float) -> float:
        starting = (
            self.run_id is not None
            and now - self._run_started < FIRST_SEGMENT_FAST_SECONDS
            and any(kind not in self._masters_sent for kind in self.kinds)
        )
        return FIRST_SEGMENT_POLL_SECONDS if starting else POLL_SECONDS

    async def sync(self) -> None:
        async with self._lock:
            if self.run_id is not None:
                for kind in self.kinds:
                    await self._sync_hls(kind)
            if self.dash:
                await self._sync_dash()
            await self._sync_screenshot()
            await self._collect_dash_garbage()

    async def _sync_hls(self, kind: str) -> None:
        run = self.run_id
        assert run is not None
        changed = []
        for rung in self.rungs:
            rendition = self.renditions[(kind, rung)]
            local = self.work_dir / (fa.cmaf_playlist(run, rung) if kind == "cmaf" else fa.ts_playlist(run, rung))
            try:
                st = local.stat()
                stamp = (local, st.st_ino, st.st_mtime_ns, st.st_size)  # ffmpeg renames a new one in
                if stamp == rendition.handled:
                    continue
                parsed = parse_media_playlist(local.read_text())
            except FileNotFoundError:
                continue
            except PlaylistError as exc:
                log.warning("ffmpeg's playlist %s is unusable (%s): waiting for its next one", local, exc)
                rendition.handled = stamp
                continue
            new = [s for s in parsed.segments if s.uri not in rendition.seen]
            if not new:
                rendition.handled = stamp
                continue
            if not rendition.resumed:
                await self._resume(rendition)
            init = parsed.open_map_uri
            if init and init not in rendition.inits:
                if await self._upload_file(rendition.base, init, keep=True):
                    rendition.inits.add(init)
                    if kind == "cmaf":
                        rendition.init_info[init] = self._read_init(rendition, init)
                else:
                    continue  # segments are useless without their init: try again next scan
            rendition.handled = stamp
            if self.part_seconds and kind == "cmaf":
                for part in new:
                    rendition.seen.add(part.uri)
                    await self._add_part(rendition, part, init)
                # Parts come five a second: remember only those ffmpeg still lists.
                rendition.seen.intersection_update(p.uri for p in parsed.segments)
                changed.append(rendition)
                continue
            for segment in new:
                rendition.seen.add(segment.uri)
                # Dated before the upload: a run's first segment anchors its media time even if
                # it never makes it out.
                date = self._date(rendition, self._segment_start(rendition, segment.uri, init), segment.duration)
                if not await self._upload_file(rendition.base, segment.uri):
                    continue
                now = datetime.now(timezone.utc)
                removed = rendition.playlist.add(segment.uri, segment.duration, run, init, now, program_date_time=date)
                rendition.trash.extend(removed)
                self._count_segment(kind, now)
            changed.append(rendition)
        for rendition in changed:
            await self._put(f"{rendition.base}/{PUBLIC_PLAYLIST}", rendition.playlist.render().encode())
            await self._take_out_trash(rendition)
        # The master goes out once every rendition it lists has a playlist to fetch.
        if kind not in self._masters_sent and all(self.renditions[(kind, r)].playlist.entries for r in self.rungs):
            master = self.work_dir / "hls" / kind / fa.master_name(run)
            try:
                text = master.read_text()
            except FileNotFoundError:
                return
            if await self._put(f"hls/{kind}/{MASTER}", public_master(text, run, PUBLIC_PLAYLIST).encode()):
                self._masters_sent.add(kind)

    # ------------------------------------------------------------------------- LL-HLS parts
    def _read_init(self, rendition: _Rendition, init: str) -> fmp4.InitInfo:
        try:
            return fmp4.read_init((self.work_dir / rendition.base / init).read_bytes())
        except OSError as exc:
            log.warning(
                "cannot read %s/%s (%s): its parts' keyframes are found from their samples only",
                rendition.base,
                init,
                exc,
            )
            return fmp4.InitInfo()

    async def _add_part(self, rendition: _Rendition, part: Segment, init: Optional[str]) -> None:
        """Forward one part the moment ffmpeg finished it; close the segment a keyframe part begins."""
        local = self.work_dir / rendition.base / part.uri
        try:
            data = local.read_bytes()
        except FileNotFoundError:
            log.warning("part %s/%s vanished before it was published", rendition.base, part.uri)
            return
        now = datetime.now(timezone.utc)
        independent = fmp4.starts_independent(data, rendition.init_info.get(init or "", fmp4.InitInfo()))
        cut = sum(p.duration for p, _, _ in rendition.open_parts)
        if rendition.open_parts and (
            independent or init != rendition.open_init or cut >= MAX_SEGMENT_WITHOUT_KEYFRAME * self.segment_seconds
        ):
            if not independent and init == rendition.open_init and not rendition.warned_unaligned:
                rendition.warned_unaligned = True
                log.error(
                    "%s: no part began with a keyframe for %.1fs: the encoder's keyframes and parts do not "
                    "line up; segments are cut without one (LL-HLS clients may stall)",
                    rendition.base,
                    cut,
                )
            await self._close_segment(rendition)
        uploaded = await self._put(f"{rendition.base}/{part.uri}", data)
        local.unlink(missing_ok=True)
        if not rendition.open_parts:
            rendition.open_init = init
            rendition.open_start = fmp4.start_seconds(data, rendition.init_info.get(init or "", fmp4.InitInfo()))
        rendition.open_parts.append((Part(part.uri, part.duration, independent), data, uploaded))
        rendition.last_part_at = now
        playlist = rendition.playlist
        playlist.part_target = max(self.part_seconds or 0.0, part.duration)
        playlist.open_parts = (
            [p for p, _, ok in rendition.open_parts if ok] if all(ok for _, _, ok in rendition.open_parts) else []
        )
        playlist.open_init = init
        playlist.preload_hint = _next_part(part.uri) if playlist.open_parts else None

    async def _close_segment(self, rendition: _Rendition) -> None:
        parts = rendition.open_parts
        rendition.open_parts = []
        playlist = rendition.playlist
        playlist.open_parts, playlist.preload_hint = [], None
        if not parts or self.run_id is None:
            return
        first = parts[0][0].uri
        name = f"seg_{first}"
        duration = sum(p.duration for p, _, _ in parts)
        date = self._date(rendition, rendition.open_start, duration)
        if not await self._put(f"{rendition.base}/{name}", b"".join(data for _, data, _ in parts)):
            return
        listed = tuple(p for p, _, _ in parts) if all(ok for _, _, ok in parts) else ()
        removed = playlist.add(
            name,
            duration,
            self.run_id,
            rendition.open_init,
            rendition.last_part_at or datetime.now(timezone.utc),
            parts=listed,
            program_date_time=date,
        )
        rendition.trash.extend(removed)
        self._count_segment(rendition.kind)

    # ------------------------------------------------------------------------- dates
    def _segment_start(self, rendition: _Rendition, uri: str, init: Optional[str]) -> Optional[float]:
        """Media time (seconds, on the encoder's output timeline) of a segment's first frame."""
        try:
            with open(self.work_dir / rendition.base / uri, "rb") as f:
                head = f.read(SEGMENT_HEAD_BYTES)
        except OSError:
            return None
        if rendition.kind == "cmaf":
            return fmp4.start_seconds(head, rendition.init_info.get(init or "", fmp4.InitInfo()))
        raw = first_video_decode_time(head)
        if raw is None:
            return None
        ref = rendition.media_ref
        unwrapped = raw if ref is None else ref[1] + sdiff(raw, ref[0])  # MPEG-TS wraps at 2^33
        rendition.media_ref = (raw, unwrapped)
        return unwrapped / CLOCK

    def _date(self, rendition: _Rendition, start: Optional[float], duration: float) -> Optional[datetime]:
        if self.dates is None:
            return None
        why = "its first frame's media time could not be read"
        if start is not None:
            when, why = self.dates.date((rendition.kind, rendition.rung), start, duration)
            if when is not None:
                return when
        if rendition.pdt_fallback_run != self.run_id:
            rendition.pdt_fallback_run = self.run_id
            log.warning(
                "%s: program-date-time falls back to when segments appear, a segment later than their "
                "capture (%s); logged once per run",
                rendition.base,
                why,
            )
        return None

    def _count_segment(self, kind: str, now: Optional[datetime] = None) -> None:
        self.stats.segments[kind] = self.stats.segments.get(kind, 0) + 1
        self.stats.last_segment_at = now or datetime.now(timezone.utc)
        if self.on_segment:
            self.on_segment(kind)

    async def _resume(self, rendition: _Rendition) -> None:
        """Before a rendition's first segment in this process: continue what a previous
        process published there (same sequence numbers, old segments until they slide out)."""
        rendition.resumed = True
        if rendition.playlist.last is not None:
            return
        try:
            previous = await self.sink.get(f"{rendition.base}/{PUBLIC_PLAYLIST}")
        except SinkError:
            previous = None
        if not previous:
            return
        try:
            playlist = MediaPlaylist.resume(previous.decode(), self.window, rendition.playlist.version)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("cannot continue %s/%s (%s): starting a new playlist", rendition.base, PUBLIC_PLAYLIST, exc)
            return
        playlist.plan_segments(self.segment_seconds)
        rendition.playlist = playlist
        log.info("continuing %s from media sequence %d", rendition.base, playlist.media_sequence)

    async def _take_out_trash(self, rendition: _Rendition) -> None:
        while len(rendition.trash) > DELETE_LAG_SEGMENTS:
            entry = rendition.trash.popleft()
            await self._delete(f"{rendition.base}/{entry.uri}")
            for part in entry.parts:  # the origin has let them go long before (its part window)
                await self._delete(f"{rendition.base}/{part.uri}")
            still_used = {e.init for e in rendition.playlist.entries} | {e.init for e in rendition.trash}
            if entry.init and entry.init not in still_used and entry.run_id != self.run_id:
                await self._delete(f"{rendition.base}/{entry.init}")
                rendition.inits.discard(entry.init)
                (self.work_dir / rendition.base / entry.init).unlink(missing_ok=True)

    async def _upload_file(self, base: str, uri: str, keep: bool = False) -> bool:
        """Publish a finished file; without ``keep`` it leaves local disk once published."""
        try:
            return await self._put_file(f"{base}/{uri}", self.work_dir / base / uri, keep)
        except FileNotFoundError:
            log.warning("segment %s/%s vanished before it was published", base, uri)
            return False

    async def _sync_dash(self) -> None:
        root = self.work_dir / "dash"
        if not root.is_dir():
            return
        # Manifest first: every segment it names was renamed into place before ffmpeg wrote it,
        # so the listing below is sure to include them.
        manifest: Optional[tuple[tuple[float, int], bytes]] = None
        if self.run_id is not None:
            path = self.work_dir / fa.dash_manifest(self.run_id)
            try:
                st = path.stat()
                stamp = (st.st_mtime, st.st_size)
                if stamp != self._dash_manifest:
                    manifest = (stamp, self._anchored(path.read_bytes()))
            except FileNotFoundError:
                pass
        # A file appearing, being renamed into place or deleted changes the directory's mtime:
        # unchanged (and no new manifest, no failed upload), there is nothing to do but a stat.
        try:
            dir_mtime = root.stat().st_mtime_ns
        except FileNotFoundError:
            return
        dir_stamp: Optional[int] = dir_mtime
        if manifest is None and not self._dash_dirty and dir_stamp == self._dash_dir:
            return
        if time.time_ns() - dir_mtime < 50_000_000:
            dir_stamp = None  # mtime ticks coarsely: a change in this same tick could hide behind it
        dirty = False
        present: set[str] = set()
        new: list[tuple[bool, float, str]] = []
        with os.scandir(root) as entries:  # d_type: no stat per entry to tell files apart
            for entry in entries:
                if entry.name.endswith(".m4s.tmp") and self._chunked_dash():
                    self._follow_dash(f"dash/{entry.name[:-4]}")
                if entry.name.endswith(".tmp") or entry.name.endswith(".mpd") or not entry.is_file():
                    continue
                name = f"dash/{entry.name}"
                present.add(name)
                if name in self._dash_files or name in self._dash_streaming:
                    continue  # published already, and final: no stat, no upload
                try:
                    mtime = entry.stat().st_mtime
                except FileNotFoundError:
                    continue
                new.append(("init" not in entry.name, mtime, name))
        for _, mtime, name in sorted(new):  # init segments first, then in the order ffmpeg wrote them
            if name in self._dash_files or name in self._dash_streaming:
                continue  # a follower streamed it while this scan was publishing others
            if "init" in name and not _dash_init_written(name, present):
                dirty = True  # look again at the next scan, even if the directory does not change
                continue
            try:
                # Kept: ffmpeg deletes its DASH files itself when they leave its window.
                published = await self._put_file(name, self.work_dir / name, keep=True)
            except FileNotFoundError:
                continue
            if published:
                self._dash_files[name] = mtime
                if "init" not in name and self.run_id is not None and name.startswith(f"dash/{self.run_id}_"):
                    self._count_segment("dash")
            else:
                dirty = True
        for name in [n for n in self._dash_files if n not in present]:
            del self._dash_files[name]  # ffmpeg slid it out of its window: so do we
            self._dash_old.pop(name, None)
            await self._delete(name)
        if manifest is not None and await self._put(DASH_MANIFEST, manifest[1]):
            self._dash_manifest = manifest[0]
        self._dash_dirty = dirty
        self._dash_dir = dir_stamp

    # ------------------------------------------------------------------------- LL-DASH
    def _chunked_dash(self) -> bool:
        return self.part_seconds is not None and self.run_id is not None

    def _follow_dash(self, name: str) -> None:
        """Stream ``name`` (being written: its .tmp exists) and the representation's next segments."""
        if "init" in name or self.run_id is None or not name.startswith(f"dash/{self.run_id}_"):
            return
        if name in self._dash_files or name in self._dash_streaming:
            return
        representation = name.rpartition("_")[0]
        task = self._dash_followers.get(representation)
        if task is not None and not task.done():
            return
        self._dash_followers[representation] = asyncio.create_task(self._dash_follower(self.run_id, name))

    async def _dash_follower(self, run_id: str, name: Optional[str]) -> None:
        while name is not None and self.run_id == run_id:
            local = self.work_dir / name
            tmp = local.with_name(local.name + ".tmp")
            # The next segment's file appears with its first chunk, about a part after the last one closed.
            deadline = time.monotonic() + FOLLOW_STALL_SEGMENTS * self.segment_seconds
            while not tmp.exists() and not local.exists():
                if time.monotonic() > deadline or self.run_id != run_id:
                    return  # the encoder stopped; a scan starts a follower again when files appear
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
            if name not in self._dash_files and name not in self._dash_streaming and tmp.exists():
                await self._stream_dash(name, tmp, local)
            name = _next_part(name)

    async def _stream_dash(self, name: str, tmp: Path, local: Path) -> None:
        try:
            handle = open(tmp, "rb")
        except FileNotFoundError:
            return  # finished in between: the mirror publishes the whole file
        self._dash_streaming.add(name)
        try:
            with handle:
                published = await self._publishing(name, self.sink.put_stream(name, self._chunks(handle, tmp)))
        finally:
            self._dash_streaming.discard(name)
        if not published:
            self._dash_dirty = True  # the mirror sends the finished file
            return
        try:
            self._dash_files[name] = local.stat().st_mtime
        except FileNotFoundError:  # already slid out of ffmpeg's window
            return
        if self.run_id is not None and name.startswith(f"dash/{self.run_id}_"):
            self._count_segment("dash")

    def _first_chunk(self, name: str, at: float) -> None:
        """Segment ``name``'s first chunk was written at ``at``: the run's anchor is at most that early."""
        number = name.rpartition("_")[2].partition(".")[0]
        if not number.isdigit() or self.part_seconds is None:
            return
        # ffmpeg numbers segments from 1 ($Number$, startNumber 1), each segment_seconds long, and
        # writes the first chunk once it has a chunk's worth of media.
        anchor = at - (int(number) - 1) * self.segment_seconds - self.part_seconds
        if self._dash_anchor is None or anchor < self._dash_anchor - ANCHOR_STEP_SECONDS:
            self._dash_anchor = anchor
            self._dash_manifest = None  # published again with the new anchor at the next scan
            self._dash_dirty = True

    def _anchored(self, mpd: bytes) -> bytes:
        """ffmpeg's MPD with availabilityStartTime moved back to the run's anchor when that is earlier."""
        match = _AVAILABILITY_START.search(mpd)
        if self._dash_anchor is None or match is None:
            return mpd
        try:
            value = match.group(1).decode().replace("Z", "+00:00")
            written = datetime.fromisoformat(value).timestamp()
        except ValueError:
            return mpd
        # At most a segment back: a source sending faster than real time (a backlog after a stall)
        # makes chunks look early, and a player that early asks for the segment after the one being
        # written, which the origin holds until it begins; any earlier would be answered 404.
        earliest = max(self._dash_anchor, written - self.segment_seconds)
        if earliest >= written:
            return mpd
        anchor = datetime.fromtimestamp(earliest, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return mpd[: match.start(1)] + anchor.encode() + mpd[match.end(1) :]

    async def _chunks(self, handle, tmp: Path) -> AsyncIterator[bytes]:
        """The bytes of a file ffmpeg is writing, as they are written, until it renames it into place."""
        grew_at = time.monotonic()
        first = True
        while True:
            data = handle.read(FOLLOW_READ_BYTES)
            if data:
                grew_at = time.monotonic()
                if first:
                    first = False
                    self._first_chunk(f"dash/{tmp.name[: -len('.tmp')]}", time.time())
                yield data
                continue
            if not tmp.exists():
                # Renamed: ffmpeg closed it first, so what is left to read is the rest of it.
                while data := handle.read(FOLLOW_READ_BYTES):
                    yield data
                return
            if time.monotonic() - grew_at > FOLLOW_STALL_SEGMENTS * self.segment_seconds:
                raise SinkError(f"{tmp.name} stopped growing (the encoder stopped mid-segment)")
            await asyncio.sleep(FOLLOW_POLL_SECONDS)

    async def _collect_dash_garbage(self) -> None:
        now = time.monotonic()
        for name, deadline in list(self._dash_old.items()):
            if now >= deadline:
                del self._dash_old[name]
                self._dash_files.pop(name, None)
                (self.work_dir / name).unlink(missing_ok=True)
                await self._delete(name)

    async def _sync_screenshot(self) -> None:
        shot = self.work_dir / fa.SCREENSHOT
        try:
            st = shot.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp == self._screenshot:
                return
            data = shot.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            # Logged once: the segments published in the same scan matter more than the picture.
            if str(exc) != self._screenshot_error:
                self._screenshot_error = str(exc)
                log.error("cannot read the screenshot: %s", exc)
            return
        self._screenshot_error = None
        if await self._put(fa.SCREENSHOT, data):
            self._screenshot = stamp

    # ------------------------------------------------------------------------- transport
    async def _put(self, path: str, data: bytes) -> bool:
        return await self._publishing(path, self.sink.put(path, data))

    async def _put_file(self, path: str, local: Path, keep: bool) -> bool:
        return await self._publishing(path, self.sink.put_file(path, local, keep))

    async def _publishing(self, path: str, upload: Awaitable[None]) -> bool:
        try:
            await upload
            return True
        except SinkError as exc:
            self.stats.upload_errors += 1
            if self.on_error:
                self.on_error()
            log.error("publishing %s failed: %s", path, exc)
            return False

    async def _delete(self, path: str) -> None:
        try:
            await self.sink.delete(path)
        except SinkError as exc:
            log.warning("deleting %s failed: %s", path, exc)
