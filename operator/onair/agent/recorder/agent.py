"""The recorder role: records one livestream's source into split, fragmented MP4 files.

One control loop owns all state. While ``Desired.recording`` is on it keeps one ffmpeg copying
the source into ``output_dir``; it tells "the source is not live" (retry with backoff, no
session yet) from "the stream dropped" (a session is open: retry quickly until
``finalize_after_seconds`` have passed since the last media, then finalize) from "the volume is
full" (pause, report, resume when space is back). A source that drops hands over to the next
of ``source_url`` + ``fallback_source_urls`` + ``backup_source_url`` (the backup ingest, while
``Desired.backup`` allows it), and the session goes on from it in a new part (``sources`` says
when and why). Nothing here may raise out of the loop: the
agent keeps serving /status whatever happens to the recording.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from prometheus_client import Counter, Gauge

from onair import endpoints
from onair.agent.app import Agent, read_secret
from onair.agent.supervisor import Child, Supervisor
from onair.api.agent import Desired, RecorderConfig, RecorderStatus

from .command import RecordingRun, ffmpeg_argv, first_media_timeout_seconds
from .disk import free_bytes, human_bytes
from .finished_api import FinishedRecordingsApi
from .hls import HlsSource, choose_top_rung, media_playlist_state
from .mp4 import holds_media
from .naming import PartFile, list_parts, next_part_number, part_pattern, unused_prefix
from .parts import part_infos, recovered_sidecars, session_parts
from onair.agent.ffmpeg_output import ProgressReader
from .session import Backoff, Session
from .source_access import SourceNotLive, display_url, fetch_playlist, is_http, url_secrets
from .sources import SourceRotation
from .sidecar import FinishedSessions, sidecar_document, write_sidecar
from .uploader import Uploader

log = logging.getLogger("onair.agent.recorder")
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"

TICK_SECONDS = 0.5
# While a session waits for its stream to come back, retry at least this often so a short drop
# costs seconds, not a backoff ceiling.
RECONNECT_RETRY_SECONDS = 1.0
DISK_POLL_SECONDS = 2.0
RESUME_FLOOR_BYTES = 1024 * 1024
# ffmpeg lines logged per run; a timestamp storm would otherwise flood the log.
MAX_LOGGED_LINES = 20


@dataclass
class RunOutcome:
    had_media: bool
    reason: str
    # The source dropped or gave nothing (not: recording stopped, a new publisher on the same source).
    source_gone: bool = True


class RecorderAgent(Agent):
    def __init__(self, config: RecorderConfig) -> None:
        super().__init__("recorder", config.listen_host, config.agent_port, config.agent_token_file)
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.supervisor = Supervisor()
        self.wanted = False
        self.state = "idle"
        self.error: Optional[str] = None
        self.source_error: Optional[str] = None
        self.session: Optional[Session] = None
        self.finished = FinishedSessions(self.output_dir, config.livestream)
        self._disk_full = False
        self._closing = False
        self._wake = asyncio.Event()
        self._loop_task: Optional[asyncio.Task] = None
        self._backoff = Backoff(1.0, max(1.0, config.retry_max_seconds))
        self.sources = SourceRotation(self._source_urls(backup=None))
        self._run_reader: Optional[ProgressReader] = None
        self._run_had_media = False
        self._pending_sidecars: dict[str, dict] = {}
        self._hls_recorded_up_to: Optional[str] = None
        # (session prefix, first part number) of the ffmpeg run in progress: its newest part is
        # still being written and must not be uploaded yet.
        self._open_run: Optional[tuple[str, int]] = None
        self._init_metrics()
        self.uploader = Uploader(config, lambda: self._open_run, self.registry) if config.s3 else None
        FinishedRecordingsApi(
            self.output_dir, config.livestream, self.finished, self.uploader, self._not_finished, self.registry
        ).add_routes(self.app)

    # metrics ----------------------------------------------------------------------------
    def _init_metrics(self) -> None:
        """Gauges are read at scrape time, so /metrics is current whoever polls /status."""
        ls = self.config.livestream
        labels = ["livestream"]
        r = self.registry
        gauges = {
            "onair_recorder_recording": (
                "1 while media is being written",
                lambda: 1.0 if self.state == "recording" else 0.0,
            ),
            "onair_recorder_session_duration_seconds": ("recorded seconds of the open session", self.session_seconds),
            "onair_recorder_output_free_bytes": (
                "free bytes on the recordings volume (-1: unreadable)",
                lambda: float(free_bytes(self.output_dir) or -1),
            ),
            "onair_recorder_error": (
                "1 while an error keeps the recorder from recording",
                lambda: 1.0 if self.error else 0.0,
            ),
            "onair_recorder_part_files": (
                "part files of this livestream on the volume",
                lambda: float(len(list_parts(self.output_dir, ls))),
            ),
        }
        for name, (help_text, read) in gauges.items():
            Gauge(name, help_text, labels, registry=r).labels(ls).set_function(read)
        self.m_sessions = Counter(
            "onair_recorder_sessions_finalized", "sessions closed with a sidecar", labels, registry=r
        )
        self.m_runs = Counter(
            "onair_recorder_source_attempts",
            "ffmpeg runs against the source, by outcome",
            ["livestream", "outcome"],
            registry=r,
        )
        self.m_disk_full = Counter("onair_recorder_disk_full_events", "times the volume filled up", labels, registry=r)
        self._labels = {"livestream": ls}

    # contract ---------------------------------------------------------------------------
    def session_seconds(self) -> float:
        if self.session is None:
            return 0.0
        current = self._run_reader.out_time_seconds if (self._run_reader and self._run_had_media) else 0.0
        return round(self.session.recorded_seconds + current, 3)

    def status(self) -> RecorderStatus:
        files = [p.name for p in list_parts(self.output_dir, self.config.livestream)]
        return RecorderStatus(
            recording=self.state == "recording",
            duration_seconds=self.session_seconds(),
            files=files,
            state=self.state,
            started_at=self.session.started_at if self.session else None,
            error=self.error,
            source_error=self.source_error,
            recordings=[self.uploader.with_uploads(r) for r in self.finished.list()]
            if self.uploader
            else self.finished.list(),
            upload=self.uploader.status() if self.uploader else None,
        )

    def _not_finished(self, session: str) -> bool:
        """Being recorded or finalized: not for the API to serve or delete yet."""
        open_prefix = self.session.prefix if self.session is not None else None
        return session == open_prefix or session in self._pending_sidecars

    def _source_urls(self, backup: Optional[bool]) -> list[str]:
        """The backup ingest comes and goes with the Livestream's ``ingest.backup`` (Desired.backup):
        a recording in progress must not be restarted for it."""
        config = self.config
        backup_urls = [config.backup_source_url] if config.backup_source_url and backup is not False else []
        return [config.source_url, *config.fallback_source_urls, *backup_urls]

    async def apply_desired(self, desired: Desired) -> None:
        if self.sources.use(self._source_urls(desired.backup)):
            log.info("sources now %s", ", ".join(display_url(u) for u in self.sources.urls))
        if desired.recording != self.wanted:
            log.info("recording %s requested", "start" if desired.recording else "stop")
        self.wanted = desired.recording
        self._wake.set()

    # lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        for url in self.sources.urls:
            if self.config.record_type == "transcoded" and not is_http(url):
                log.warning(
                    "recordType is transcoded but source %s is not an HLS (http) URL; recording it as it is",
                    display_url(url),
                )
        if self.config.read_token_file and not read_secret(self.config.read_token_file):
            log.error("no read token in %s: the source will refuse the recorder", self.config.read_token_file)
        self._loop_task = asyncio.get_running_loop().create_task(self._control_loop(), name="recorder")
        if self.uploader:
            self.uploader.start()

    async def drain(self) -> None:
        """The open session is finalized (its sidecar written) before the recorder goes."""
        self._closing = True
        self._wake.set()
        if self._loop_task:
            try:
                await asyncio.wait_for(self._loop_task, 120)
            except asyncio.TimeoutError:
                log.error("recorder loop did not stop within 120s")
                self._loop_task.cancel()
        if self.uploader:
            # The session just finalized: its last part and sidecar, if the grace period allows.
            await self.uploader.close()

    async def stop(self) -> None:
        if not self._closing:
            # start() failed half-way, so there was no drain: nothing recorded long enough to keep.
            self._closing = True
            if self._loop_task:
                self._loop_task.cancel()
            if self.uploader:
                await self.uploader.close(drain_seconds=0)
        await self.supervisor.stop_all()

    # the loop ---------------------------------------------------------------------------
    async def _control_loop(self) -> None:
        await self._recover_unfinished()
        while not self._closing:
            try:
                await self._step()
            except Exception:  # a bug in one step must not end recording for good
                log.exception("recorder step failed; retrying")
                await self._sleep(2.0)
        if self.session:
            await self._finalize("agent stopped")
        self._set_state("idle")

    async def _step(self) -> None:
        await self._flush_pending_sidecars()
        if not self.wanted:
            if self.session:
                await self._finalize("recording stopped")
            self.source_error = None
            self._set_state("idle")
            self._backoff.reset()
            await self._sleep(None)
            return
        now = time.monotonic()
        if self.session and not self._disk_full and self.session.finalize_due(now, self.config.finalize_after_seconds):
            await self._finalize(f"source gone for {self.config.finalize_after_seconds:g}s")
            return
        if not self._output_ready():
            await self._sleep(DISK_POLL_SECONDS)
            return
        try:
            source = await self._resolve_source()
        except SourceNotLive as exc:
            tried = self.sources.current
            self._next_source()
            await self._retry_later(str(exc), tried)
            return
        tried = self.sources.current
        outcome = await self._record(source)
        if self._disk_full or self._closing or not self.wanted:
            return
        if outcome.source_gone:
            self._next_source()
        if outcome.had_media:
            self._backoff.reset()
            remaining = (
                self.session.seconds_until_due(time.monotonic(), self.config.finalize_after_seconds)
                if self.session
                else 0.0
            )
            log.warning(
                "recording of %s from %s interrupted: %s; the session is finalized in %.0fs unless the "
                "stream comes back",
                self.config.livestream,
                display_url(tried),
                outcome.reason,
                remaining,
            )
            self.source_error = f"{display_url(tried)}: {outcome.reason}"
            self._set_state("reconnecting")
            await self._sleep(TICK_SECONDS)
        else:
            await self._retry_later(outcome.reason, tried)

    async def _sleep(self, seconds: Optional[float]) -> None:
        """Sleep, but wake at once when the desired state changes or the agent stops."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _next_source(self) -> None:
        if self.sources.several:
            log.info("trying source %s next", display_url(self.sources.advance()))

    async def _retry_later(self, reason: str, tried: str) -> None:
        self.source_error = f"{display_url(tried)}: {reason}"
        delay = self._backoff.next()
        if self.session:
            delay = min(
                delay,
                RECONNECT_RETRY_SECONDS,
                max(TICK_SECONDS, self.session.seconds_until_due(time.monotonic(), self.config.finalize_after_seconds)),
            )
            if self.sources.several:
                # Another source may be live right now: the backoff is for sources that are all down.
                delay = TICK_SECONDS
            self._set_state("reconnecting")
            log.info("source %s still not back (%s); retrying in %.1fs", display_url(tried), reason, delay)
        else:
            self._set_state("waiting")
            log.info(
                "source %s is not live (%s); recording starts when it is, retrying in %.1fs",
                display_url(tried),
                reason,
                delay,
            )
        await self._sleep(delay)

    def _set_state(self, state: str) -> None:
        self.state = state

    # output volume ----------------------------------------------------------------------
    def _output_ready(self) -> bool:
        """The volume exists and has room; otherwise say so in /status and the log, once."""
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._report_error(
                "error",
                f"cannot use output directory {self.output_dir}: {exc.strerror}; is the recordings volume mounted?",
            )
            return False
        if not os.access(self.output_dir, os.W_OK | os.X_OK):
            self._report_error(
                "error",
                f"output directory {self.output_dir} is not writable (read-only volume or wrong "
                f"owner; the recorder runs as uid {os.getuid()})",
            )
            return False
        free = free_bytes(self.output_dir)
        # After a write failed for lack of space, wait for real room: resuming into a few free
        # bytes would only fail again at once.
        needed = max(self.config.min_free_bytes, RESUME_FLOOR_BYTES if self._disk_full else 0)
        if free is not None and free < needed:
            self._report_error(
                "disk_full",
                f"recordings volume {self.output_dir} is full: {human_bytes(free)} free, "
                f"recording paused until {human_bytes(needed)} are free",
            )
            self._disk_full = True
            return False
        if self.error and self.state in ("disk_full", "error"):
            log.info(
                "recordings volume %s is usable again (%s free); resuming",
                self.output_dir,
                human_bytes(free) if free is not None else "unknown",
            )
            self.error = None
        if self._disk_full:
            self._disk_full = False
            if self.session:
                # Time spent paused for space is not the stream's absence.
                self.session.last_media_at = time.monotonic()
        return True

    def _report_error(self, state: str, message: str) -> None:
        if message != self.error:
            log.error("%s", message)
        self.error = message
        self._set_state(state)

    # source -----------------------------------------------------------------------------
    def _read_token(self) -> Optional[str]:
        """Read at every attempt: a rotated Secret reaches the mounted file without a restart."""
        return read_secret(self.config.read_token_file)

    async def _resolve_source(self) -> HlsSource | str:
        """An RTMP URL (the ingest reads the token from its query) or the HLS playlists to copy
        (the origin reads it from the Authorization header)."""
        url = self.sources.current
        token = self._read_token()
        if not is_http(url):
            return endpoints.with_read_token(url, token)
        try:
            source = choose_top_rung(await fetch_playlist(url, token), url)
            state = media_playlist_state(await fetch_playlist(source.video_url, token))
        except ValueError as exc:
            raise SourceNotLive(str(exc)) from None
        if state.ended:
            raise SourceNotLive("the playlist has ENDLIST: the broadcast is over")
        if state.last_segment is None:
            raise SourceNotLive("the playlist has no segment yet")
        if state.last_segment == self._hls_recorded_up_to:
            raise SourceNotLive("the playlist has no new segment since the last recording")
        return source

    async def _remember_hls_position(self, source: HlsSource) -> None:
        """The newest segment when a run ends: a retry needs a newer one to count as live."""
        try:
            self._hls_recorded_up_to = media_playlist_state(
                await fetch_playlist(source.video_url, self._read_token())
            ).last_segment
        except (SourceNotLive, ValueError):
            pass

    # one ffmpeg run ---------------------------------------------------------------------
    async def _record(self, source: HlsSource | str) -> RunOutcome:
        prefix = (
            self.session.prefix
            if self.session
            else unused_prefix(self.output_dir, self.config.livestream, datetime.now(timezone.utc))
        )
        start_number = next_part_number(self._all_parts(), prefix)
        run = RecordingRun(
            output_pattern=str(self.output_dir / part_pattern(prefix)),
            split_seconds=self.config.split_seconds,
            start_number=start_number,
            rtmp_url=source if isinstance(source, str) else None,
            hls=source if isinstance(source, HlsSource) else None,
            hls_live_start_index=-1 if self.session else -3,
            bearer_token=self._read_token() if isinstance(source, HlsSource) else None,
        )
        reader = ProgressReader()
        self._run_reader, self._run_had_media = reader, False
        exited = asyncio.Event()
        exit_codes: list[int] = []
        flags = {"discontinuity": False, "logged": 0}

        def on_line(line: str) -> None:
            kind = reader.feed(line)
            if kind.progress:
                return
            if kind.discontinuity:
                flags["discontinuity"] = True
            if kind.disk_full:
                log.error("[ffmpeg] %s", line)
            elif flags["logged"] < MAX_LOGGED_LINES:
                flags["logged"] += 1
                log.info("[ffmpeg] %s", line)

        def on_exit(code: int) -> None:
            exit_codes.append(code)
            exited.set()

        child = Child(
            name="recorder-ffmpeg",
            argv=ffmpeg_argv(run, FFMPEG),
            restart=False,
            stop_signal=signal.SIGINT,
            stop_timeout=3.0,
            secrets=[
                *url_secrets(self.sources.current),
                *(url_secrets(source) if isinstance(source, str) else []),
                *filter(None, [run.bearer_token]),
            ],
            on_line=on_line,
            on_exit=on_exit,
        )
        self._open_run = (prefix, start_number)
        try:
            return await self._run_child(child, run, reader, exited, exit_codes, flags, prefix, start_number)
        finally:
            self._open_run = None
            if self.uploader:
                self.uploader.wake()

    async def _run_child(
        self,
        child: Child,
        run: RecordingRun,
        reader: ProgressReader,
        exited: asyncio.Event,
        exit_codes: list[int],
        flags: dict,
        prefix: str,
        start_number: int,
    ) -> RunOutcome:
        self.supervisor.add(child)
        spawned = time.monotonic()
        first_media_timeout = self.sources.attempt_timeout(
            first_media_timeout_seconds(self.config.stall_timeout_seconds), reconnecting=self.session is not None
        )
        last_advance: Optional[float] = None
        seen_out_time = -1.0
        seen_blocks = 0
        reason = "ffmpeg exited"
        source_gone = True
        try:
            while True:
                self._wake.clear()
                waiters = [asyncio.ensure_future(exited.wait()), asyncio.ensure_future(self._wake.wait())]
                await asyncio.wait(waiters, timeout=TICK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
                now = time.monotonic()
                if reader.blocks != seen_blocks and (seen_blocks == 0 or reader.out_time_seconds > seen_out_time):
                    last_advance = now
                    seen_out_time = reader.out_time_seconds
                    if not self._run_had_media:
                        self._run_had_media = True
                        self._on_media(prefix, run)
                seen_blocks = reader.blocks
                if self._run_had_media:
                    self.session.last_media_at = last_advance  # type: ignore[union-attr]
                if exited.is_set():
                    reason = self._exit_reason(reader, exit_codes[-1] if exit_codes else None)
                    break
                if self._closing or not self.wanted:
                    reason, source_gone = "recording stopped", False
                    break
                if flags["discontinuity"]:
                    reason, source_gone = "source timestamps restarted (a new publisher took over)", False
                    break
                if last_advance is not None and now - last_advance > self.config.stall_timeout_seconds:
                    reason = f"no media for {self.config.stall_timeout_seconds:g}s"
                    break
                if last_advance is None and now - spawned > first_media_timeout:
                    reason = f"no media within {first_media_timeout:g}s of connecting"
                    break
                if (
                    self.session
                    and not self._run_had_media
                    and self.session.finalize_due(now, self.config.finalize_after_seconds)
                ):
                    reason = "the stream did not come back in time"
                    break
        finally:
            await self.supervisor.remove(child.name)
            if self.session and self._run_had_media:
                self.session.recorded_seconds += reader.out_time_seconds
            self._run_reader, self._run_had_media = None, False
        if run.hls is not None:
            await self._remember_hls_position(run.hls)
        had_media = last_advance is not None
        if not had_media:
            self._discard_empty_parts(prefix, start_number)
        self.m_runs.labels(self._labels["livestream"], "media" if had_media else "no_media").inc()
        if reader.disk_full:
            self._disk_full = True
            self.m_disk_full.labels(self._labels["livestream"]).inc()
            free = free_bytes(self.output_dir)
            self._report_error(
                "disk_full",
                f"recordings volume {self.output_dir} is full (No space left on device, "
                f"{human_bytes(free or 0)} free); recording paused, the stream is unaffected; "
                "it resumes when space is freed",
            )
        return RunOutcome(had_media, reason, source_gone and not reader.disk_full)

    def _discard_empty_parts(self, prefix: str, start_number: int) -> None:
        """Files a run without media left behind (0 bytes or only headers) are not recordings."""
        for part in list_parts(self.output_dir, self.config.livestream):
            if part.prefix != prefix or part.number < start_number:
                continue
            path = self.output_dir / part.name
            if holds_media(path):
                continue
            try:
                path.unlink()
            except OSError as exc:
                log.warning("cannot remove %s, which a run without media left behind: %s", part.name, exc.strerror)
            else:
                log.debug("removed %s: the run wrote no media into it", part.name)

    def _exit_reason(self, reader: ProgressReader, code: Optional[int]) -> str:
        if reader.disk_full:
            return "no space left on device"
        if code == 0:
            return "the source ended the stream"
        if reader.last_message:
            return f"ffmpeg exited with code {code}: {reader.last_message}"
        return f"ffmpeg exited with code {code}"

    def _on_media(self, prefix: str, run: RecordingRun) -> None:
        if self.session is None:
            self.session = Session(prefix=prefix, started_at=datetime.now(timezone.utc), last_media_at=time.monotonic())
            log.info(
                "recording %s started: %s -> %s (part %d, split every %ds)",
                self.config.livestream,
                display_url(self.sources.current),
                self.output_dir / part_pattern(prefix),
                run.start_number,
                self.config.split_seconds,
            )
        else:
            log.info(
                "recording of %s continues from %s with part %d",
                self.config.livestream,
                display_url(self.sources.current),
                run.start_number,
            )
        self.source_error = None
        self._set_state("recording")

    # finishing --------------------------------------------------------------------------
    async def _finalize(self, reason: str) -> None:
        # The session stays in /status (its duration) until its sidecar lists it among the
        # finished ones: a poll in between must not see the recording vanish.
        session = self.session
        self.sources.reset()  # the next session prefers sourceUrl again
        if session is None:
            return
        parts = [p for p in self._all_parts() if p.prefix == session.prefix]
        if not parts:
            self.session = None
            log.info("recording session %s ended (%s) without any file", session.prefix, reason)
            return
        ended_at = datetime.now(timezone.utc)
        infos = await part_infos(self.output_dir, parts)
        document = sidecar_document(
            livestream=self.config.livestream,
            record_type=self.config.record_type,
            started_at=session.started_at,
            ended_at=ended_at,
            parts=infos,
            end_reason=reason,
            recorded_seconds=session.recorded_seconds,
        )
        self.session = None
        self._store_sidecar(session.prefix, document)
        log.info(
            "recording %s finalized (%s): %d part(s), %.1fs",
            session.prefix,
            reason,
            len(infos),
            document["durationSeconds"],
        )

    def _store_sidecar(self, prefix: str, document: dict) -> None:
        try:
            write_sidecar(self.output_dir, prefix, document)
        except OSError as exc:
            self._pending_sidecars[prefix] = document
            message = f"cannot write the sidecar of recording {prefix} ({exc.strerror}); retrying"
            if message != self.error:
                log.error("%s", message)
            self.error = message
            return
        self._pending_sidecars.pop(prefix, None)
        self.m_sessions.labels(self._labels["livestream"]).inc()
        if self.uploader:
            self.uploader.wake()

    async def _flush_pending_sidecars(self) -> None:
        for prefix, document in list(self._pending_sidecars.items()):
            self._store_sidecar(prefix, document)
            if prefix not in self._pending_sidecars and self.error and "sidecar" in self.error:
                self.error = None

    def _all_parts(self) -> list[PartFile]:
        return session_parts(self.output_dir, self.config.livestream, uploads=self.uploader is not None)

    async def _recover_unfinished(self) -> None:
        """Sessions a killed agent left without a sidecar get one now, marked recovered."""
        for prefix, document in await recovered_sidecars(
            self.output_dir, self.config.livestream, self.config.record_type, self._all_parts()
        ):
            self._store_sidecar(prefix, document)
            log.warning(
                "recording %s had no sidecar (the recorder was killed mid-recording); finalized it now: "
                "%d part(s), %.1fs",
                prefix,
                len(document["parts"]),
                document["durationSeconds"],
            )
