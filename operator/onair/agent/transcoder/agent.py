"""The transcoder agent: warm readers, one encoder per broadcast, a packager, and the HTTP API."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
import shutil
import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from prometheus_client import Counter, Gauge

from onair.agent.app import Agent, read_secret
from onair.agent.supervisor import Child, Supervisor
from onair.api.agent import Desired, TranscoderConfig, TranscoderStatus
from onair.render.ladder import fit_ladder

from .ffmpeg_args import EncoderPlan, encoder_args, part_seconds
from .packager import Packager
from .pdt import ProgramDateTimes
from onair.agent.ffmpeg_output import parse_speed
from .relay import LOW_DELAY_READ_INTERVAL_SECONDS, READ_INTERVAL_SECONDS, Relay
from .sinks import DirSink, FanoutSink, HttpSink, Sink
from .whep import Rendition, WhepServer

log = logging.getLogger("onair.transcoder")

# Changes that matter wake the loop at once (desired state, a source selected or restarted);
# the period only backs that up.
CONVERGE_SECONDS = 5.0
SPEED_STALE_SECONDS = 5.0
# What the last segments may cost on SIGTERM. When the whole Livestream is being deleted the
# origin is gone too, and retrying every file would outlast the pod's grace period.
SHUTDOWN_UPLOAD_SECONDS = 3.0
# Outputs count as produced while the last segment is at most this old (and this many segment
# durations): a failover or a publisher reconnecting is a gap of a second or two, not a stop.
OUTPUT_FRESH_MIN_SECONDS = 10.0
OUTPUT_FRESH_SEGMENTS = 3
# ffmpeg prefixes messages with its context's address ("[image2 @ 0x55d0...]"), different in
# every process: without it the same failure reads the same every time.
_FFMPEG_CONTEXT_ADDRESS = re.compile(r" @ 0x[0-9a-f]+")


def new_run_id() -> str:
    """Sortable, unique per encoder process; in every output file name."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


class TranscoderAgent(Agent):
    def __init__(self, config: TranscoderConfig, ffmpeg: str = "ffmpeg") -> None:
        super().__init__("transcoder", config.listen_host, config.agent_port, config.agent_token_file)
        self.config = config
        self.ffmpeg = ffmpeg
        self.supervisor = Supervisor()
        self.work_dir = Path(config.work_dir) / "out"
        labels = ["livestream"]
        r = self.registry
        self.m_speed = Gauge(
            "onair_transcoder_speed", "ffmpeg speed= of the encoder (1.0 is real time)", labels, registry=r
        )
        self.m_switches = Counter(
            "onair_transcoder_source_switches", "times the encoder's source changed", ["livestream", "to"], registry=r
        )
        self.m_restarts = Counter(
            "onair_transcoder_encoder_restarts", "encoder processes that died and were restarted", labels, registry=r
        )
        self.m_segments = Counter(
            "onair_transcoder_segments_written", "segments published", ["livestream", "format"], registry=r
        )
        self.m_upload_errors = Counter(
            "onair_transcoder_upload_errors", "files that could not be published", labels, registry=r
        )
        self.m_active = Gauge(
            "onair_transcoder_active_source", "1 for the source on air", ["livestream", "source"], registry=r
        )
        self.m_broadcasting = Gauge(
            "onair_transcoder_broadcasting", "1 while the encoder produces outputs", labels, registry=r
        )
        # Every series exists from the start (at 0), so rates and alerts need no special case.
        for metric in (self.m_speed, self.m_restarts, self.m_upload_errors, self.m_broadcasting):
            metric.labels(config.livestream)
        for kind in ("cmaf", "ts", "dash"):
            self.m_segments.labels(config.livestream, kind)
        self.relay = Relay(
            self.supervisor,
            main_url=config.main_url,
            backup_url=config.backup_url,
            pull_uris=config.pull_uris,
            ffmpeg=ffmpeg,
            freeze_seconds=config.freeze_seconds,
            return_seconds=config.return_seconds,
            on_switch=self._switched,
            # A broadcast waiting for a source starts its encoder now, not at the next tick.
            on_select=lambda _name: self._wake.set(),
            read_token=lambda: read_secret(config.read_token_file),
            read_interval=LOW_DELAY_READ_INTERVAL_SECONDS if config.whep else READ_INTERVAL_SECONDS,
        )
        self.sink = self._make_sink()
        kinds = [k for k, on in (("cmaf", config.hls_cmaf), ("ts", config.hls_mpegts)) if on]
        self.packager = Packager(
            self.work_dir,
            self.sink,
            kinds=kinds,
            dash=config.dash,
            window=config.playlist_segments,
            on_segment=self._segment_published,
            on_error=lambda: self.m_upload_errors.labels(config.livestream).inc(),
            dates=ProgramDateTimes(self.relay.arrivals, lambda: self.relay.encoder_start_dts),
        )
        self.encoder: Optional[Child] = None
        self.plan: Optional[EncoderPlan] = None
        self.speed: Optional[float] = None
        self._speed_at = 0.0
        self._stopping_encoder = False
        # Why the last encoder process ended on its own (its last words), until one publishes again.
        self._encoder_failure: Optional[str] = None
        self._encoder_said: list[str] = []  # its last distinct messages
        self._run_started_at: Optional[datetime] = None  # of the running encoder process
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._packager_stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._switches: dict[str, int] = {}  # source -> switches to it that viewers saw
        self.whep: Optional[WhepServer] = None
        self.rendition: Optional[Rendition] = None
        if config.whep:
            self.m_whep_viewers = Gauge(
                "onair_transcoder_whep_viewers", "WHEP (WebRTC) viewers now", labels, registry=r
            )
            self.m_whep_viewers.labels(config.livestream)
            # Proof of forwarding: what viewers' RTP senders packetize are the encoder's packets.
            self.m_whep_forwarded = Counter(
                "onair_transcoder_whep_packets_forwarded",
                "encoded packets handed to WHEP viewers as they are (never re-encoded)",
                ["livestream", "kind"],
                registry=r,
            )
            turn = config.whep_turn_secret_file
            self.whep = WhepServer(
                self._whep_refusal,
                list(config.whep_ice_servers),
                list(
                    config.whep_ice_servers
                    if config.whep_client_ice_servers is None
                    else config.whep_client_ice_servers
                ),
                turn_secret_source=lambda: read_secret(turn),
                turn_ttl_seconds=config.whep_turn_credential_ttl_seconds,
                max_viewers=config.whep_max_viewers,
                on_forwarded=self._whep_forwarded,
            )
            self.app.add_routes(self.whep.routes())
        if not config.main_url and not config.backup_url and not config.pull_uris:
            log.error("no source configured (mainUrl, backupUrl or pullUris): nothing to transcode")
        if (
            config.read_token_file
            and (config.main_url or config.backup_url)
            and not read_secret(config.read_token_file)
        ):
            log.error(
                "no read token in %s: the ingest will refuse the readers of mainUrl/backupUrl", config.read_token_file
            )

    def _make_sink(self) -> Sink:
        if self.config.output_dir:
            return DirSink(self.config.output_dir)
        urls = self.config.output_urls or ([self.config.output_url] if self.config.output_url else [])
        if urls:
            token_file = self.config.output_token_file
            if token_file and read_secret(token_file) is None:
                log.error("output token file %s is missing or empty: uploads will be refused", token_file)
            if len(urls) > 1:
                return FanoutSink(urls, token=lambda: read_secret(token_file))
            return HttpSink(urls[0], token=lambda: read_secret(token_file))
        fallback = Path(self.config.work_dir) / "public"
        log.error("neither outputDir nor outputUrl is set: publishing to %s, which nobody serves", fallback)
        return DirSink(fallback)

    # ------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self.whep is not None:
            from onair.agent.webrtc.iceservers import install_ice_addresses

            install_ice_addresses(self.config.whep_ice_addresses)
            self.rendition = self.whep.start()
        shutil.rmtree(self.work_dir, ignore_errors=True)  # files of a previous life are no run's
        (self.work_dir / "dash").mkdir(parents=True, exist_ok=True)
        self.relay.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.packager.run(self._packager_stop), name="packager"))
        self._tasks.append(loop.create_task(self._converge_forever(), name="converge"))

    async def drain(self) -> None:
        """The encoder's last segments are published (within ``SHUTDOWN_UPLOAD_SECONDS``)."""
        for task in self._tasks:
            if task.get_name() == "converge":
                task.cancel()
        # Nothing new is read from now on: a source that went away with us is not waited for.
        self.relay.stop_restarting()
        self.sink.give_up_after(SHUTDOWN_UPLOAD_SECONDS)
        async with self._lock:
            # The pod going away is a restart as far as viewers are concerned: no ENDLIST.
            await self._stop_encoder(ended=False)
        self._packager_stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks:  # only left running when start() failed half-way (no drain)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.relay.stop()
        await self.supervisor.stop_all()
        if self.whep is not None:
            await self.whep.stop()
        await self.sink.close()

    async def apply_desired(self, desired: Desired) -> None:
        # Stopping an encoder takes seconds (its last segments): the operator's PUT must not wait.
        self._wake.set()

    def wants_outputs(self) -> bool:
        return self.desired.broadcasting and self.desired.active and self.desired.phase != "ended"

    def wants_pull(self) -> bool:
        """Gcore: "when false, PULL is deactivated"; an ended stream pulls nothing either."""
        return self.desired.active and self.desired.phase != "ended"

    async def _apply_sources(self) -> None:
        desired = self.desired
        # Unset (no operator, or one that predates the field): the backup is read when configured.
        backup = desired.backup is not False
        await self.relay.set_enabled("backup", backup, "the backup ingest " + ("exists" if backup else "is gone"))
        pull = self.wants_pull()
        await self.relay.set_enabled(
            "pull", pull, "active again" if pull else "phase ended" if desired.phase == "ended" else "active is false"
        )

    async def _converge_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._converge()
            except Exception:
                log.exception("transcoder converge failed")
            try:
                await asyncio.wait_for(self._wake.wait(), CONVERGE_SECONDS)
            except asyncio.TimeoutError:
                pass

    async def _converge(self) -> None:
        async with self._lock:
            await self._apply_sources()
            if self.wants_outputs() and self.encoder is None:
                await self._start_encoder()
            elif not self.wants_outputs() and self.encoder is not None:
                await self._stop_encoder(ended=True)
            if not self.wants_outputs() and self.whep is not None and self.whep.viewers:
                # Nothing more will come (backstage again, ended, inactive): the sessions end now
                # instead of idling until the viewers leave.
                await self.whep.end_all(self._whep_refusal() or "the broadcast stopped")
            elif self.encoder is not None and self._audio_mismatch():
                # A source without audio (or the first with it) cannot be spliced into an encoder
                # built the other way: its muxers would wait for audio that never comes. A new
                # run is a discontinuity, which players handle; a stalled playlist is not.
                log.warning(
                    "source %s %s audio: restarting the encoder as a new run",
                    self.relay.on_air(),
                    "has" if self.plan and not self.plan.has_audio else "has no",
                )
                await self._stop_encoder(ended=False)
                await self._start_encoder()

    def _audio_mismatch(self) -> bool:
        info = self.relay.source_info()
        return (
            info is not None
            and self.plan is not None
            and self.relay.on_air() == info.name
            and info.has_audio != self.plan.has_audio
        )

    # ------------------------------------------------------------------------- encoder
    def _plan(self) -> Optional[EncoderPlan]:
        info = self.relay.source_info()
        if info is None:
            return None  # nothing on air yet: the ladder depends on what arrives
        cfg = self.config
        rungs = list(cfg.ladder)
        fps = None
        if info.video is not None:
            rungs = fit_ladder(cfg.ladder, info.video.width, info.video.height, info.video.fps)
            fps = info.video.fps
        if not rungs:
            log.error("the configured ladder is empty: nothing to encode")
            return None
        segment = min(cfg.segment_seconds, 1.0) if cfg.low_latency else cfg.segment_seconds
        # LL-HLS parts ride on the CMAF output, LL-DASH chunks on the DASH output: without either
        # there is nothing to cut them from.
        parts = part_seconds(fps, segment, cfg.part_seconds) if cfg.low_latency and (cfg.hls_cmaf or cfg.dash) else None
        return EncoderPlan(
            rungs=rungs,
            run_id=new_run_id(),
            segment_seconds=segment,
            fps=fps,
            has_audio=info.has_audio,
            hls_cmaf=cfg.hls_cmaf,
            hls_mpegts=cfg.hls_mpegts,
            dash=cfg.dash,
            low_latency=cfg.low_latency,
            part_seconds=parts,
            zero_latency=cfg.zero_latency_encoding,
            dash_window=cfg.playlist_segments,
            screenshot_width=cfg.screenshot_width,
            screenshot_interval_seconds=cfg.screenshot_interval_seconds,
            preset=cfg.preset,
            ffmpeg=self.ffmpeg,
            webrtc_url=self.rendition.url if self.rendition is not None else None,
        )

    def _whep_forwarded(self, kind: str) -> None:
        self.m_whep_forwarded.labels(self.config.livestream, kind).inc()

    def _whep_refusal(self) -> Optional[str]:
        """Why a WHEP viewer cannot start now (503), None when the stream is broadcasting."""
        if self.desired.phase == "ended":
            return "the livestream has ended"
        if not self.wants_outputs():
            return (
                f"the livestream is not live: nothing is being broadcast (phase {self.desired.phase}"
                f"{', active is false' if not self.desired.active else ''})"
            )
        if self.encoder is None or not self.encoder.running:
            return "the livestream is not live: no source is on air yet"
        return None

    async def _start_encoder(self) -> None:
        plan = self._plan()
        if plan is None:
            return
        self.plan = plan
        self._stopping_encoder = False
        log.info(
            "broadcast starts: run %s, ladder %s from %s",
            plan.run_id,
            ", ".join(f"{r.name}={r.width}x{r.height}" for r in plan.rungs),
            self.relay.selected(),
        )
        self.encoder = Child(
            name="encoder",
            argv=encoder_args(plan),
            cwd=str(self.work_dir),
            stdin_pipe=True,
            # SIGINT lets ffmpeg write its last segments; the packager, not ffmpeg, decides ENDLIST.
            stop_signal=signal.SIGINT,
            stop_timeout=10.0,
            backoff_initial=0.5,
            backoff_max=5.0,
            on_start=self._encoder_started,
            on_line=self._encoder_line,
            on_exit=self._encoder_exited,
        )
        self.supervisor.add(self.encoder)

    def _encoder_started(self, proc: asyncio.subprocess.Process) -> None:
        assert self.plan is not None
        self._encoder_said = []
        self._run_started_at = datetime.now(timezone.utc)
        self.packager.begin_run(
            self.plan.run_id, [r.name for r in self.plan.rungs], self.plan.part_seconds, self.plan.segment_seconds
        )
        self.relay.attach(proc.stdin)

    def _segment_published(self, kind: str) -> None:
        self.m_segments.labels(self.config.livestream, kind).inc()
        self._encoder_failure = None

    async def _encoder_exited(self, code: int) -> None:
        self.relay.detach()
        self.speed = None
        if self._stopping_encoder:
            return
        # A crash (or a source we could not decode). The next process is a new run: new file
        # names, a discontinuity with its own init in every playlist, no ENDLIST in between.
        self.m_restarts.labels(self.config.livestream).inc()
        try:
            await self.packager.finish(ended=False)
        except Exception:  # what it left is lost; the next run must start all the same
            log.exception("publishing what the encoder left failed")
        # After its last segments: those are no sign that encoding works.
        said = "; ".join(self._encoder_said)
        self._encoder_failure = f"the encoder exited with code {code}" + (f" ({said})" if said else "")
        plan = self._plan() or self.plan
        if plan is not None and self.encoder is not None:
            if plan is self.plan:
                plan = dataclasses.replace(plan, run_id=new_run_id())
            self.plan = plan
            self.encoder.argv = encoder_args(plan)
            log.warning("encoder exited with code %s; restarting as run %s", code, plan.run_id)

    async def _stop_encoder(self, ended: bool) -> None:
        encoder = self.encoder
        if encoder is None:
            return
        self._stopping_encoder = True
        proc = encoder.proc
        self.relay.detach()
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()  # EOF: ffmpeg drains what it has and writes its trailers
        await self.supervisor.remove(encoder.name)
        self.encoder = None
        self.speed = None
        self._encoder_failure = None
        await self.packager.finish(ended=ended)
        log.info("broadcast stopped (run %s)", self.plan.run_id if self.plan else None)

    def _encoder_line(self, line: str) -> None:
        speed = parse_speed(line)
        if speed is not None:
            self.speed = speed
            self._speed_at = time.monotonic()
            self.m_speed.labels(self.config.livestream).set(speed)
            return
        if ("frame=" in line and "fps=" in line) or "deprecated pixel format" in line:
            return  # stats without speed; swscale's standing complaint about JPEG's yuvj420p
        log.info("[encoder] %s", line)
        message = _FFMPEG_CONTEXT_ADDRESS.sub("", line.strip())[:300]
        if message and message not in self._encoder_said:
            self._encoder_said = [*self._encoder_said, message][-2:]

    def _switched(self, previous: Optional[str], current: str) -> None:
        self.m_switches.labels(self.config.livestream, current).inc()
        self._switches[current] = self._switches.get(current, 0) + 1

    # ------------------------------------------------------------------------- status
    def _current_speed(self) -> Optional[float]:
        if self.speed is None or time.monotonic() - self._speed_at > SPEED_STALE_SECONDS:
            return None
        return self.speed

    def producing(self) -> bool:
        """Outputs are being produced now: the running encoder's run published a fresh segment."""
        if self.encoder is None or self.plan is None or not self.encoder.running:
            return False
        last = self.packager.stats.last_segment_at
        started = self._run_started_at
        if self.packager.run_id != self.plan.run_id or last is None or started is None or last < started:
            return False
        fresh = max(OUTPUT_FRESH_MIN_SECONDS, OUTPUT_FRESH_SEGMENTS * self.plan.segment_seconds)
        return (datetime.now(timezone.utc) - last).total_seconds() <= fresh

    def _qualities(self) -> list[str]:
        """Renditions of the running encoder, once its first segment is published."""
        if self.encoder is None or self.plan is None or not self.encoder.running:
            return []
        names = [r.name for r in self.plan.rungs]
        published = self.packager.run_id == self.plan.run_id and any(
            rendition.playlist.last is not None and rendition.playlist.last.run_id == self.plan.run_id
            for rendition in self.packager.renditions.values()
        )
        return names if published or not self.packager.kinds else []

    def before_scrape(self) -> None:
        if self.whep is not None:
            self.m_whep_viewers.labels(self.config.livestream).set(len(self.whep.viewers))
        on_air = self.relay.on_air() if self.encoder is not None else self.relay.selected()
        for name in self.relay.readers:
            self.m_active.labels(self.config.livestream, name).set(1 if name == on_air else 0)
        self.m_broadcasting.labels(self.config.livestream).set(1 if self.producing() else 0)
        if self._current_speed() is None:
            self.m_speed.labels(self.config.livestream).set(0)

    def status(self) -> TranscoderStatus:
        encoding = self.encoder is not None
        producing = self.producing()
        return TranscoderStatus(
            active_source=self.relay.on_air() if encoding else self.relay.selected(),
            speed=self._current_speed(),
            qualities=self._qualities(),
            last_segment_at=self.packager.stats.last_segment_at,
            broadcasting=producing,
            run_id=self.plan.run_id if encoding and self.plan else None,
            source_switches=dict(self._switches),
            error=self._encoder_failure if encoding and not producing else None,
        )
