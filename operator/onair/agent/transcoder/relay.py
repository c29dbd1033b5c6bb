"""Warm sources and the splice into the one long-lived encoder.

Every configured source has its own reader process all the time (``ffmpeg -c copy`` to MPEG-TS
on a pipe), whether or not it is the one on air. The relay reads all of them, keeps each one's
packets since its last keyframe, and forwards the active one to the encoder's stdin through the
``Splicer``. Failing over is therefore a matter of which pipe gets forwarded: no process
starts, no probing, no new encoder, and the backup's cached keyframe goes out the moment main
is declared dead (reader EOF: at once; silence: after ``freeze_seconds``).

Pull mode has a single reader that walks ``pull_uris`` round-robin: a URI whose reader exits
or stays silent is replaced by the next one.

A configured source can be switched off and on while the agent runs (``set_enabled``): the
backup ingest exists only while the Livestream asks for it, and a pull source is not pulled
while the stream is inactive or ended. Switched off, its reader is stopped and it counts as
silent, so a source on air fails over exactly as if it had died.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from onair.agent.supervisor import Child, Supervisor
from onair.endpoints import with_read_token

from .ffmpeg_args import reader_args
from .mpegts import CLOCK, DEFAULT_VIDEO_FRAME, Feed, Splicer, pes_times
from .pdt import ArrivalMap
from onair.agent.ffmpeg_output import InputProbe, InputVideo
from onair.agent.redaction import redact_url, url_secrets
from .source import FREEZE_SECONDS, RETURN_SECONDS, PullRotation, SourceSelector

log = logging.getLogger("onair.transcoder.relay")

# The tick sleeps until the next moment a decision can change (a source falling silent for
# ``freeze_seconds``, one becoming stable), at most this long (pull watchdogs, a clock to lean on).
MAX_TICK_SECONDS = 1.0
MIN_TICK_SECONDS = 0.01
# Readers' output is taken this often, in chunks: ~10 wake-ups a second per source instead of one
# per muxed frame (~80), for at most this much added latency.
READ_INTERVAL_SECONDS = 0.1
# With WHEP (sub-second glass to glass) the 50 ms that reading in chunks adds on average are a tenth
# of the budget: ~50 wake-ups a second per source instead.
LOW_DELAY_READ_INTERVAL_SECONDS = 0.02
# A cached GOP longer than this is not replayed on a switch (the output would run that far
# ahead of the wall clock); the switch waits for the next keyframe instead.
MAX_CACHE_BURST_SECONDS = 3.0
# A cached keyframe received more than this before the next frame viewers are due (the one after
# the last they got from the source that failed) would show them content again and keep them that
# much further behind for good: the switch waits for the new source's next keyframe instead. Two
# sources' frames are told apart by when they were received, which the readers' chunks blur by
# far less than this (see ``Feed.received``).
MAX_SPLICE_REPEAT_SECONDS = 0.05
# Picture neither source delivered around a switch stays time on the output timeline (a frozen
# picture, no change in latency) up to this long; a longer outage is squeezed out as before (the
# players stalled through it anyway). Below the splicer's JUMP_FORWARD, which would undo it.
MAX_SPLICE_HOLE_SECONDS = 4.0
# A pull URI that connected but delivers nothing usable for this long is given up.
PULL_STARTUP_SECONDS = 10.0
PULL_STALL_SECONDS = 5.0
# More unsent bytes than this at the encoder means it cannot keep up: drop, resume at a keyframe.
MAX_ENCODER_BACKLOG = 64 * 1024 * 1024
_NOISY = ("error", "failed", "refused", "invalid", "timed out", "not found", "denied")


@dataclass
class _Reader:
    name: str
    child: Child
    feed: Feed
    source_url: str = ""  # as configured: never with the read token
    enabled: bool = True  # False: no reader process, the source counts as silent
    probe: InputProbe = field(default_factory=InputProbe)
    rotation: Optional[PullRotation] = None
    started_at: float = 0.0
    last_data_at: Optional[float] = None

    @property
    def url(self) -> str:
        return self.rotation.current if self.rotation else self.source_url


@dataclass(frozen=True)
class SourceInfo:
    name: str
    video: Optional[InputVideo]
    has_audio: bool


class Relay:
    def __init__(
        self,
        supervisor: Supervisor,
        *,
        main_url: Optional[str] = None,
        backup_url: Optional[str] = None,
        pull_uris: Sequence[str] = (),
        ffmpeg: str = "ffmpeg",
        freeze_seconds: float = FREEZE_SECONDS,
        return_seconds: float = RETURN_SECONDS,
        on_switch: Optional[Callable[[Optional[str], str], None]] = None,
        on_select: Optional[Callable[[str], None]] = None,
        read_token: Callable[[], Optional[str]] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        read_interval: float = READ_INTERVAL_SECONDS,
    ) -> None:
        self.supervisor = supervisor
        self.read_interval = read_interval
        self.ffmpeg = ffmpeg
        self.read_token = read_token  # the ingest's, for main and backup (never a pull source's)
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_switch = on_switch  # viewers saw the source change
        self.on_select = on_select  # the selected source changed (backstage included) or restarted
        self.readers: dict[str, _Reader] = {}
        self.splicer = Splicer()
        # When the frames the encoder reads were received (see ``pdt``), and the decode time of
        # the first one the current encoder got: its outputs' media time starts there.
        self.arrivals = ArrivalMap()
        self.encoder_start_dts: Optional[int] = None
        self.active: Optional[str] = None  # the source being forwarded (or last forwarded)
        self.pending: Optional[str] = None  # switch to this one at its next keyframe
        self.switches = 0
        self.dropped_bytes = 0
        self._forwarding: Optional[Feed] = None  # the exact reader incarnation being forwarded
        self._sink: Optional[asyncio.StreamWriter] = None
        self._task: Optional[asyncio.Task] = None
        sources: list[tuple[str, list[str]]] = []
        if main_url:
            sources.append(("main", [main_url]))
        if backup_url:
            sources.append(("backup", [backup_url]))
        if not sources and pull_uris:
            sources.append(("pull", list(pull_uris)))
        self.selector = SourceSelector([name for name, _ in sources], freeze_seconds, return_seconds)
        for name, urls in sources:
            rotation = PullRotation(urls) if name == "pull" else None
            self._add_reader(name, urls[0], rotation)

    # ------------------------------------------------------------------------- readers
    def _add_reader(self, name: str, url: str, rotation: Optional[PullRotation]) -> None:
        child = Child(
            name=f"reader-{name}",
            argv=[],
            # Readers must come back fast: they are what makes the backup warm.
            backoff_initial=0.2,
            backoff_max=1.0,
            stop_timeout=3.0,
            data_interval=self.read_interval,
        )
        reader = _Reader(name, child, Feed(name), source_url=url, rotation=rotation)
        child.on_start = lambda proc, r=reader: self._reader_started(r)
        child.on_data = lambda data, r=reader: self._reader_data(r, data)
        child.on_line = lambda line, r=reader: self._reader_line(r, line)
        child.on_exit = lambda code, r=reader: self._reader_exited(r, code)
        self.readers[name] = reader
        self._prepare(reader)

    def _prepare(self, reader: _Reader) -> None:
        """The command line of the reader's next process. The read token is read from its file
        every time (a rotated Secret reaches the mount without a restart) and is redacted from
        every log line, like any secret in a source URL."""
        url = reader.url
        secrets = url_secrets(reader.rotation.uris if reader.rotation else [url])
        if reader.rotation is None:
            token = self.read_token()
            url = with_read_token(url, token)
            secrets += [token] if token else []
        reader.child.argv = reader_args(url, self.ffmpeg)
        reader.child.secrets = secrets

    def _reader_started(self, reader: _Reader) -> None:
        reader.feed = Feed(reader.name)
        reader.probe = InputProbe()
        reader.started_at = self.clock()
        reader.last_data_at = None
        self.selector.restarted(reader.name)

    def _reader_line(self, reader: _Reader, line: str) -> None:
        reader.probe.feed(line)
        lowered = line.lower()
        level = logging.INFO if any(word in lowered for word in _NOISY) else logging.DEBUG
        log.log(level, "[reader-%s] %s", reader.name, line)

    def _reader_exited(self, reader: _Reader, code: int) -> None:
        self.selector.restarted(reader.name)
        if not reader.enabled:
            self._decide()  # switched off on purpose: not a failure of its URI
            return
        if reader.rotation is not None:
            failed = reader.rotation.current
            nxt = reader.rotation.failed()
            log.warning("pull source %s ended (code %s); trying %s", redact_url(failed), code, redact_url(nxt))
        self._prepare(reader)
        self._decide()  # a reader EOF is the fastest failure signal there is: act on it now

    def _reader_data(self, reader: _Reader, data: bytes) -> None:
        now = self.clock()
        packets, key_at = reader.feed.push(data, self.wall_clock())
        reader.last_data_at = now
        was_healthy = self.selector.healthy(reader.name, now - 1e-6)
        self.selector.data(reader.name, now, reader.feed.ready)
        became_healthy = not was_healthy and self.selector.healthy(reader.name, now)
        if became_healthy:
            log.info("source %s healthy", reader.name)
        self._forward(reader, packets, key_at)
        if became_healthy:
            self._decide()  # a source that just became usable (the first one, say) need not wait for the tick

    def _forward(self, reader: _Reader, packets: list[bytes], key_at: Optional[int]) -> None:
        if self._forwarding is reader.feed:
            if self._sink is not None:  # no encoder (backstage): selection only, no splicing work
                self._write(self.splicer.forward(packets))
            return
        if key_at is None:
            return
        if self.pending == reader.name or (self.active == reader.name and self._forwarding is None):
            # Planned switch, a restarted reader of the active source, or a new encoder: all
            # resume at this keyframe.
            self._start_forwarding(reader, packets[key_at:])

    # ------------------------------------------------------------------------- switching
    def _picture_gap(self, reader: _Reader, keyframe: bytes) -> Optional[float]:
        """Seconds of capture time between the end of the last frame viewers got from another
        source and ``keyframe`` of ``reader``, judged by when each was received (a camera feeding
        both encoders makes them arrive together): negative when the keyframe holds picture they
        already saw. None without such a frame (a first selection, a new encoder, the same source
        again) or without arrival times to compare."""
        last = self.splicer.last_video
        times = pes_times(keyframe)
        if last is None or last[0].name == reader.name or times is None or times.decode is None:
            return None
        feed, decode = last
        shown, starts = feed.received(decode), reader.feed.received(times.decode)
        if shown is None or starts is None:
            return None
        frame = (self.splicer.video.frame or DEFAULT_VIDEO_FRAME) / CLOCK
        return starts - shown - frame

    def _start_forwarding(self, reader: _Reader, packets: Sequence[bytes]) -> None:
        previous = self.active
        self._forwarding = reader.feed
        self.active = reader.name
        self.pending = None
        if self._sink is not None:
            gap = self._picture_gap(reader, packets[0]) if packets else None
            hole = 0
            if gap is not None:
                log.info("splicing %s %+.3fs of picture after the last frame shown", reader.name, gap)
                hole = round(min(max(gap, 0.0), MAX_SPLICE_HOLE_SECONDS) * CLOCK)
            self._write(self.splicer.splice(reader.feed, packets, hole))
        if previous != reader.name:
            log.info(
                "source %s: %s",
                "switch" if previous else "selected",
                f"{previous} -> {reader.name}" if previous else reader.name,
            )
            if self.on_select:
                self.on_select(reader.name)
            # Only what viewers see counts: not the first selection, not changes in backstage.
            if previous is not None and self._sink is not None:
                self.switches += 1
                if self.on_switch:
                    self.on_switch(previous, reader.name)
        elif self.on_select:
            # The same source again, from a new reader: what it carries (audio or not) may differ.
            self.on_select(reader.name)

    def _decide(self) -> None:
        now = self.clock()
        decision = self.selector.decide(self.active, now, hysteresis=self._sink is not None)
        target = decision.target
        if target is None:
            return
        reader = self.readers[target]
        if target == self.active and self._forwarding is reader.feed:
            self.pending = None
            return
        cache_ok = reader.feed.ready and reader.feed.gop_seconds <= MAX_CACHE_BURST_SECONDS
        if cache_ok and decision.immediate:
            gap = self._picture_gap(reader, reader.feed.gop[0])
            if gap is not None and gap < -MAX_SPLICE_REPEAT_SECONDS:
                if self.pending != target:
                    log.info(
                        "the cached keyframe of %s holds %.3fs already shown: switching at its next keyframe",
                        target,
                        -gap,
                    )
                cache_ok = False
        if decision.immediate and cache_ok:
            self._start_forwarding(reader, list(reader.feed.gop))
        elif self.pending != target:
            self.pending = target
            if decision.immediate:
                # Nothing usable cached: forget the dead source now, resume at the next keyframe.
                self._forwarding = None
            log.info("switching to %s at its next keyframe", target)

    def _check_pull(self) -> None:
        reader = self.readers.get("pull")
        if reader is None or not reader.child.running or reader.child.proc is None:
            return
        now = self.clock()
        silent_for = now - (reader.last_data_at or reader.started_at)
        limit = PULL_STALL_SECONDS if reader.feed.ready else PULL_STARTUP_SECONDS
        if silent_for > limit:
            log.warning("pull source %s silent for %.0fs; giving up on it", redact_url(reader.url), silent_for)
            try:
                reader.child.proc.kill()
            except ProcessLookupError:
                pass

    async def _tick(self) -> None:
        while True:
            delay = MAX_TICK_SECONDS
            try:
                self._decide()
                self._check_pull()
                now = self.clock()
                due = self.selector.next_change(now)
                if due is not None:
                    delay = min(delay, max(MIN_TICK_SECONDS, due - now))
            except Exception:
                log.exception("relay tick failed")
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------------- encoder side
    def attach(self, stdin: Optional[asyncio.StreamWriter]) -> None:
        """A new encoder process: it must start from a keyframe, with the program tables."""
        self._sink = stdin
        self.splicer.reset()
        self.splicer.video_frames = []
        self.encoder_start_dts = None
        self._forwarding = None
        if stdin is None or self.active is None:
            return
        reader = self.readers[self.active]
        if reader.feed.ready and reader.feed.gop_seconds <= MAX_CACHE_BURST_SECONDS:
            self._start_forwarding(reader, list(reader.feed.gop))

    def detach(self) -> None:
        self._sink = None
        self._forwarding = None
        self.splicer.reset()

    def _note_arrivals(self) -> None:
        """Give the frames the splicer just retimed their arrival, on the encoder's timeline."""
        frames = self.splicer.video_frames
        if not frames:
            return
        self.splicer.video_frames = []
        feed = self.splicer.feed
        arrivals = feed.arrivals if feed is not None else {}
        for out, source, new_piece in frames:
            if self.encoder_start_dts is None:
                self.encoder_start_dts = out
            if new_piece:
                self.arrivals.begin_piece(out)
            wall = arrivals.get(source)
            if wall is not None:
                self.arrivals.record(out, wall)

    def _write(self, data: bytes) -> None:
        self._note_arrivals()
        sink = self._sink
        if not data or sink is None:
            return
        if sink.is_closing():
            self.detach()
            return
        if sink.transport.get_write_buffer_size() > MAX_ENCODER_BACKLOG:
            # The encoder is far behind: skip to a later keyframe rather than grow without end.
            self.dropped_bytes += len(data)
            self._forwarding = None
            return
        try:
            sink.write(data)
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            self.detach()

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for reader in self.readers.values():
            if reader.enabled:
                self.supervisor.add(reader.child)
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="relay")

    async def set_enabled(self, name: str, enabled: bool, why: str) -> None:
        """Start or stop reading source ``name`` (a no-op for one not configured or already so)."""
        reader = self.readers.get(name)
        if reader is None or reader.enabled == enabled:
            return
        reader.enabled = enabled
        if self._task is None:
            return  # not started: ``start`` honours it
        if enabled:
            log.info("source %s: reading again (%s)", name, why)
            self._prepare(reader)
            self.supervisor.add(reader.child)
        else:
            log.info("source %s: reader stopped (%s)", name, why)
            await self.supervisor.remove(reader.child.name)
            self.selector.restarted(name)
            self._decide()

    def stop_restarting(self) -> None:
        """Shutting down: a reader that ends now stays ended (the source is likely going away
        with us), while one still running keeps feeding the encoder until it stops."""
        for reader in self.readers.values():
            reader.child.restart = False

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await asyncio.gather(*(self.supervisor.remove(reader.child.name) for reader in self.readers.values()))

    # ------------------------------------------------------------------------- state
    def on_air(self) -> Optional[str]:
        """The source viewers are getting now: forwarded and healthy."""
        if (
            self.active is not None
            and self._forwarding is not None
            and self._forwarding is self.readers[self.active].feed
            and self.selector.healthy(self.active, self.clock())
        ):
            return self.active
        return None

    def selected(self) -> Optional[str]:
        """The source the relay would put on air (also while no encoder runs)."""
        if self.active is not None and self.selector.healthy(self.active, self.clock()):
            return self.active
        return None

    def source_info(self) -> Optional[SourceInfo]:
        name = self.selected()
        if name is None:
            return None
        reader = self.readers[name]
        return SourceInfo(name, reader.probe.video, reader.feed.has_audio)
