"""The origin role: the public HTTP port players (and a CDN) read from, fed by the transcoder.

Public port (``http_port``): ``/hls/...``, ``/dash/...``, ``/screenshot.jpg``, ``/player``,
``/time`` (DASH UTCTiming), ``/static/vendor/hls.min.js`` and ``dash.all.min.js``. Upload port
(``upload_port``): the transcoder's ``PUT/DELETE /upload/...`` only, on a listener of its own so
that viewers (however many, however slow) never share its accept queue and connections. Agent
port: the shared ``/status``, ``/metrics``, ``/desired``, plus ``POST /dvr/clear``.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import time
from collections import Counter as CounterOf, deque
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Coroutine, Optional
from urllib.parse import quote, urlsplit

import aiohttp
import jinja2
import uvloop
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from prometheus_client import Counter, Gauge

from onair.agent import fast_gets, http_limits
from onair.agent.app import Agent, listen, run_role
from onair.agent.hls import MediaPlaylist, add_query
from onair.agent.webrtc import signalling
from onair.api.agent import ORIGIN_FINISH_SECONDS, Desired, OriginConfig, OriginStatus
from onair.endpoints import PLAYBACK_PATHS, RECORDINGS_PATH, UPLOAD_PREFIX

from . import access, chunked, whep
from .dash import (
    LL_MAX_PLAYBACK_RATE,
    LL_MIN_PLAYBACK_RATE,
    LowLatency,
    init_patterns,
    rewrite_mpd,
    young_stream_wait,
    time_shift_buffer_depth,
)
from .dvr import GRACE_MIN_SECONDS, JOIN_HOLD_MAX_PHASE, Dvr
from .journal import Journal
from .replicas import Replicas
from .paths import SCREENSHOT, BadPath, is_publishable, kind_of, safe_relpath
from .storage import HotFile, Storage
from .uploads import Uploads

log = logging.getLogger("onair.agent.origin")

AGENT_DIR = Path(__file__).resolve().parent.parent
HLS_JS = AGENT_DIR / "static" / "vendor" / "hls.min.js"
DASH_JS = AGENT_DIR / "static" / "vendor" / "dash.all.min.js"
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(AGENT_DIR / "templates" / "origin")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
JANITOR_INTERVAL = 1.0
# The public listener's connections: every LL-HLS viewer holds one open (a blocking reload) all the time.
PUBLIC_CONNECTIONS = 16384
# Its accept queue (the kernel caps it at net.core.somaxconn): thousands of viewers reconnect at
# once after a restart; past the queue their handshakes wait for SYN-ACK retransmissions (1, 2, 4 s...).
PUBLIC_BACKLOG = 4096
# The upload listener's connections: the transcoder's sink keeps a few open per rendition and retries.
UPLOAD_CONNECTIONS = 64
# On clear, DASH segments younger than the transcoder's own window (plus this) are kept: the
# current MPD still lists them.
DASH_CLEAR_MARGIN_SECONDS = 10.0
CORS_HEADERS = "Authorization, Range, Content-Type, If-Match"
# Location and Link: a WHEP player in a page of another origin reads its session and ICE servers.
CORS_EXPOSE = "Content-Length, Content-Range, Date, ETag, Location, Link"
WHEP_PATH = PLAYBACK_PATHS["whep"]
# What a WHEP POST may take: an SDP offer of a browser is a few kilobytes (more with many codecs).
MAX_SDP_BYTES = 64 * 1024
# DASH segment length assumed when no HLS rendition tells the real one (deciding whether a DASH
# segment began after the origin was made public).
DASH_SEGMENT_GUESS_SECONDS = 10.0
NOT_BROADCAST = (
    "this part of the stream was not broadcast to viewers (backstage preview, or made only for a "
    "recording): a playback token of a member is required"
)
# LL-HLS (RFC 8216bis 6.2.5.2): a blocking playlist reload, or a request for the hinted part, is
# held at most this many target durations; then 503 (the client asks again). A blocking response
# names its state in its URL (_HLS_msn/_HLS_part): a CDN may share it for this many target
# durations, which folds the viewers asking at the same moment into one origin request.
BLOCK_TARGET_DURATIONS = 3
BLOCKING_CACHE_TARGET_DURATIONS = 2
# Playback requests carry no body; only /upload reads one (under its own per-file cap).
MAX_REQUEST_BODY = 64 * 1024
# What FileResponse must answer (206, 304, 412): the in-memory answer is for plain GETs only.
_CONDITIONAL = frozenset({"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"})
_CONDITIONAL_LOWER = frozenset(name.lower() for name in _CONDITIONAL)
# Response heads prepared for the fast answers (per file in memory; more are made again on demand).
FAST_HEADS = 4096
OPEN_TO_ANYONE = access.Decision(True)
# Rewritten MPDs kept (per MPD, host and token).
MPD_CACHE_ENTRIES = 64
# The player page's hls.js in the low-latency tier may play up to this fast to get back to
# PART-HOLD-BACK: at hls.js's default of 1 it never catches up, and a device whose media clock runs a
# little slow (headless Chromium's does, by about 0.3 %) drifts further behind all session long.
LL_HLS_MAX_PLAYBACK_RATE = 1.5
PLAYER_FORMATS = {"cmaf": PLAYBACK_PATHS["hlsCmaf"], "ts": PLAYBACK_PATHS["hlsMpegts"], "dash": PLAYBACK_PATHS["dash"]}


_SERVER_HEADER = f"Server: {SERVER_SOFTWARE}\r\n".encode("latin-1")
RECORDING_FILE = re.compile(r"^[A-Za-z0-9._-]+_\d{8}T\d{6}Z_part\d+\.(m3u8|mp4)$")


def vod_source_ok(url: str) -> bool:
    """What the player page accepts as ``?src=``: an absolute http(s) URL (no script, data or file URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and len(url) <= 4096


class Metrics:
    def __init__(self, registry) -> None:
        self.requests = Counter(
            "onair_origin_http_requests", "Public port responses by status", ["status"], registry=registry
        )
        self.sent_bytes = Counter(
            "onair_origin_http_sent_bytes", "Body bytes served on the public port", registry=registry
        )
        self.uploads = Counter(
            "onair_origin_uploads", "Transcoder uploads by kind and outcome", ["kind", "result"], registry=registry
        )
        self.upload_bytes = Counter(
            "onair_origin_upload_bytes", "Bytes received from the transcoder", registry=registry
        )
        self.dvr_segments = Gauge(
            "onair_origin_dvr_segments", "Segments in the DVR window", ["playlist"], registry=registry
        )
        self.dvr_seconds = Gauge(
            "onair_origin_dvr_available_seconds", "Rewind depth every rendition offers right now", registry=registry
        )
        self.deleted = Counter(
            "onair_origin_deleted_files", "Files the origin deleted (window slide, clear)", registry=registry
        )
        self.refused = Counter(
            "onair_origin_playback_refused", "Playback requests refused in backstage", registry=registry
        )
        self.whep_sessions = Gauge(
            "onair_origin_whep_sessions",
            "WHEP sessions playing whose access this replica keeps checking (let in here, or listed by the transcoder)",
            registry=registry,
        )
        self.whep_ended = Counter(
            "onair_origin_whep_sessions_ended",
            "WHEP sessions this replica ended because the access rules now refuse them",
            registry=registry,
        )
        self.fast = Counter(
            "onair_origin_http_fast_responses",
            "Public port responses written from memory without aiohttp's request handling",
            registry=registry,
        )
        self.connections = http_limits.ConnectionMetrics(
            registry, "onair_origin_connections", "onair_origin_connections_refused"
        )
        self._responses: dict[int, Any] = {}

    def responses(self, status: int):
        """The counter of one status: looked up once, not per response (``labels()`` is not free)."""
        child = self._responses.get(status)
        if child is None:
            child = self._responses[status] = self.requests.labels(status=str(status))
        return child


class OriginAgent(Agent):
    def __init__(self, config: OriginConfig) -> None:
        super().__init__("origin", config.listen_host, config.agent_port, config.agent_token_file)
        self.config = config
        self._recorder_session: Optional[aiohttp.ClientSession] = None
        self.storage = Storage(config.data_dir)
        self.dvr = Dvr(config.dvr_window_seconds, config.dvr_enabled)
        self.dvr.set_public(False, time.monotonic(), datetime.now(timezone.utc))  # until told otherwise
        # DASH segments and screenshots uploaded while the origin was not public: members only.
        self.private_files: set[str] = set()
        self.upload_token = access.SecretFile(config.upload_token_file)
        self.playback_secret = access.SecretFile(config.playback_secret_file)
        self.read_token = access.SecretFile(config.read_token_file)
        self.metrics = Metrics(self.registry)
        self.manifests: set[str] = set()  # masters and MPDs on disk
        # MPD -> (the transcoder's own timeShiftBufferDepth, its init segment name patterns)
        self.mpds: dict[str, tuple[Optional[float], list[re.Pattern]]] = {}
        self.dash_files: deque[tuple[float, str]] = deque()
        self.dash_uploaded_at: dict[str, float] = {}
        # DASH segments being uploaded right now: viewers get their chunks as they arrive.
        self.dash_live: dict[str, chunked.GrowingFile] = {}
        self.dash_low_latency = LowLatency.for_chunks(config.part_seconds) if config.low_latency else None
        self.last_upload_at: Optional[float] = None
        self._log_limiter = http_limits.LogLimiter(log)
        self._phase_logged: Optional[tuple[str, bool]] = (self.desired.phase, False)
        self._janitor: Optional[asyncio.Task] = None
        self._replica_watch: Optional[asyncio.Task] = None
        # SIGTERM came: not ready, viewers served on until the drain ends (``drain``).
        self.draining = False
        self._public_runner: Optional[web.AppRunner] = None
        self._upload_runner: Optional[web.AppRunner] = None
        self.public_guard: Optional[http_limits.ConnectionGuard] = None
        self.upload_guard: Optional[http_limits.ConnectionGuard] = None
        self.journal = Journal(self.storage.root / ".dvr")
        # Per rendition directory: replaced (and the old one set) whenever its playlist is indexed
        # or a file lands there. What held LL-HLS requests wait on; only that rendition's wake up.
        self._hls_changed: dict[str, asyncio.Event] = {}
        self._hls_waiters: CounterOf[str] = CounterOf()
        self._mpd_cache: dict[tuple[str, bytes, str, str], str] = {}
        # path -> (the file in memory it was made for, its response head up to CORS, Date and Server)
        self._fast_heads: dict[str, tuple[HotFile, bytes]] = {}
        self.uploads = Uploads(self)
        self.replicas = Replicas(self, config.peer_upload_urls or [])
        self.whep_sessions = whep.Sessions()
        self.metrics.whep_sessions.set_function(lambda: len(self.whep_sessions))
        self._whep_tasks: set[asyncio.Task] = set()
        self._whep_reconciled_at = 0.0
        self.app.add_routes([web.post("/dvr/clear", self._post_clear), web.get("/readyz", self._get_readyz)])
        # A probe, like /healthz: what a StatefulSet's rolling update waits for before the next replica.
        self.open_paths.add("/readyz")
        self.public = self._public_app()
        self.upload = self._upload_app()

    # ------------------------------------------------------------------------- helpers
    async def run_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """File I/O off the event loop: a slow volume must not stall every viewer."""
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))

    def log_limited(self, key: str, level: int, msg: str, *args: Any, exc_info: Any = None) -> None:
        """Log at most once every few seconds per key: refusals and failures can come by the thousand."""
        self._log_limiter.log(key, level, msg, *args, exc_info=exc_info)

    def public_connections(self) -> int:
        return self.public_guard.open if self.public_guard else 0

    def update_dvr_metrics(self, path: Optional[str] = None) -> None:
        for p in [path] if path else list(self.dvr.renditions):
            self.metrics.dvr_segments.labels(playlist=p).set(self.dvr.segment_count(p))
        self.metrics.dvr_seconds.set(self.dvr.available_seconds() or 0.0)

    def hls_changed(self, path: Optional[str] = None) -> None:
        """A playlist was indexed or an HLS file stored (``path``; None: anything, e.g. the phase):
        requests held for that rendition look again."""
        if path is None:
            events = list(self._hls_changed.values())
            self._hls_changed.clear()
        else:
            event = self._hls_changed.pop(posixpath.dirname(path), None)
            events = [event] if event is not None else []
        for event in events:
            event.set()

    async def _hold_until(self, path: str, ready: Callable[[], bool], seconds: float) -> bool:
        """Wait until ``ready()``, looking again whenever ``path``'s rendition changes; False after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        directory = posixpath.dirname(path)
        self._hls_waiters[directory] += 1
        try:
            while not ready():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                event = self._hls_changed.get(directory)
                if event is None:
                    event = self._hls_changed[directory] = asyncio.Event()
                try:
                    async with asyncio.timeout(remaining):
                        await event.wait()
                except TimeoutError:
                    return ready()
            return True
        finally:
            self._hls_waiters[directory] -= 1
            if not self._hls_waiters[directory]:
                # Nobody waits there any more: a path asked for once (maybe made up) leaves nothing behind.
                del self._hls_waiters[directory]
                self._hls_changed.pop(directory, None)

    def _hold_seconds(self, path: Optional[str] = None) -> float:
        renditions = [self.dvr.renditions[path]] if path in self.dvr.renditions else self.dvr.renditions.values()
        return BLOCK_TARGET_DURATIONS * max((r.target_duration for r in renditions), default=2)

    def dash_uploaded(self, path: str) -> None:
        if path.endswith(".mpd"):
            return
        now = time.monotonic()
        self.dash_uploaded_at[path] = now
        self.dash_files.append((now, path))

    def dash_protected(self, path: str) -> bool:
        directory, _, name = path.rpartition("/")
        return any(
            p.match(name)
            for mpd, (_, patterns) in self.mpds.items()
            if mpd.rpartition("/")[0] == directory
            for p in patterns
        )

    def ended(self, playlist: str) -> bool:
        if self.desired.phase == "ended":
            return True
        rendition = self.dvr.renditions.get(playlist)
        return rendition is not None and rendition.upstream_ended(time.monotonic())

    def index_playlist(self, path: str, playlist: MediaPlaylist) -> None:
        """Index an uploaded media playlist (its fresh segments, parts, the window)."""
        had = self.dvr.segment_count(path)
        result = self.dvr.ingest(path, playlist, time.monotonic())
        log.debug(
            "playlist %s: %d listed, %d appended, %d slid out",
            path,
            len(playlist.segments),
            len(result.appended),
            len(result.removed),
        )
        if result.skipped:
            self.log_limited(
                f"skipped:{path}",
                logging.WARNING,
                "%s lists URIs the origin refuses (%s): skipped",
                path,
                ", ".join(u[:60] for u in result.skipped[:3]),
            )
        if result.appended and not had:
            log.info("DVR %s: first segment %s", path, result.appended[0].path)
        self.update_dvr_metrics(path)
        self.hls_changed(path)

    # ------------------------------------------------------------------------- agent API
    def status(self) -> OriginStatus:
        available = self.dvr.available_seconds()
        return OriginStatus(
            dvr_window_seconds=self.config.dvr_window_seconds if self.config.dvr_enabled else 0,
            playlists=sorted(self.manifests | set(self.dvr.playlists())),
            dvr_available_seconds=round(available, 3) if available is not None else None,
            last_upload_at=datetime.fromtimestamp(self.last_upload_at, timezone.utc) if self.last_upload_at else None,
        )

    def public_now(self) -> bool:
        """What the transcoder uploads now is for viewers: they are allowed and it is broadcast to them."""
        return self.open_to_viewers() and self.desired.public_broadcasting is not False

    def note_upload_visibility(self, path: str) -> None:
        """A DASH segment or screenshot just stored: remember it when viewers must not get it."""
        duration = (
            0.0
            if path == SCREENSHOT
            else max((r.target_duration for r in self.dvr.renditions.values()), default=DASH_SEGMENT_GUESS_SECONDS)
        )
        now = time.monotonic()
        self.dvr.upload_seen(now)
        if self.dvr.began_public(now, duration):
            self.private_files.discard(path)
        else:
            self.private_files.add(path)

    async def apply_desired(self, desired: Desired) -> None:
        self.hls_changed()  # an ended stream answers held reloads at once
        self.end_refused_whep_sessions()  # back to backstage, publicBroadcasting off: at once, not at the next sweep
        if self.dvr.set_public(self.public_now(), time.monotonic(), datetime.now(timezone.utc)):
            log.info(
                "%s",
                "segments from now on are public"
                if self.dvr.public_since is not None
                else "segments from now on are private: only playback-token holders and in-cluster readers get them",
            )
        state = (desired.phase, self.open_to_viewers())
        if self._phase_logged != state:
            log.info(
                "phase is now %s: %s%s",
                desired.phase,
                "anyone may play" if state[1] else "playback needs a valid token",
                ", DVR playable as VOD with ENDLIST" if desired.phase == "ended" else "",
            )
            self._phase_logged = state

    async def _get_readyz(self, request: web.Request) -> web.Response:
        """Ready once viewers are served: with replicas, only after this one copied a peer's DVR."""
        if self.draining:
            return web.Response(status=503, text="stopping: serving viewers until load balancers drop this origin\n")
        if self._public_runner is None:
            return web.Response(status=503, text="not serving viewers yet (copying a peer replica's DVR)\n")
        return web.Response(text="ready\n")

    async def _post_clear(self, request: web.Request) -> web.Response:
        doomed = self.dvr.clear()
        deleted = await self.run_io(self.storage.delete, doomed)
        deleted += await self._clear_dash()
        self.metrics.deleted.inc(deleted)
        self.update_dvr_metrics()
        log.info("DVR cleared on request: %d files deleted; new segments keep coming", deleted)
        return web.json_response({"cleared": True, "deletedFiles": deleted})

    async def _clear_dash(self) -> int:
        upstream = max((d for d, _ in self.mpds.values() if d), default=30.0)
        cutoff = time.monotonic() - upstream - DASH_CLEAR_MARGIN_SECONDS
        doomed = [p for p, t in self.dash_uploaded_at.items() if t < cutoff and not self.dash_protected(p)]
        for p in doomed:
            del self.dash_uploaded_at[p]
        self.private_files.difference_update(doomed)
        return await self.run_io(self.storage.delete, doomed)

    # ------------------------------------------------------------------------- public app
    def _public_app(self) -> web.Application:
        # Bodies are only read by /upload, which streams them under its own per-file cap.
        app = web.Application(client_max_size=MAX_REQUEST_BODY, middlewares=[self._errors])
        app.add_routes(
            [
                web.put(f"/{UPLOAD_PREFIX}/{{path:.*}}", self._not_an_upload_port),
                web.delete(f"/{UPLOAD_PREFIX}/{{path:.*}}", self._not_an_upload_port),
                web.get("/time", self._time),
                web.get("/player", self._player),
                web.get("/static/vendor/hls.min.js", self._hls_js),
                web.get(f"/{RECORDINGS_PATH}/{{file}}", self._recording),
                web.get("/static/vendor/dash.all.min.js", self._dash_js),
                web.post(f"/{WHEP_PATH}", self._whep_post),
                web.delete(f"/{WHEP_PATH}/{{id}}", self._whep_session),
                web.patch(f"/{WHEP_PATH}/{{id}}", self._whep_session),
                web.get("/{path:.*}", self._playback),
                web.options("/{path:.*}", self._preflight),
            ]
        )
        app.on_response_prepare.append(self._on_prepare)
        self._gated = (self._playback, self._player, self._recording)  # what a closed stream needs a token for
        return app

    def _upload_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BODY, middlewares=[self._errors])
        app.add_routes(self.uploads.routes(UPLOAD_PREFIX))
        return app

    async def _not_an_upload_port(self, request: web.Request) -> web.Response:
        response = web.json_response(
            {
                "error": "uploads are not accepted on the public port: the transcoder "
                "uploads to the origin's upload port (uploadPort)"
            },
            status=403,
        )
        response.force_close()  # never read an upload body here
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        if request.body_exists and not request.path.startswith(f"/{UPLOAD_PREFIX}/"):
            length = request.content_length
            if length is None or length > MAX_REQUEST_BODY:
                response = web.json_response({"error": "request body too large"}, status=413)
                response.force_close()  # do not read a body nobody asked for
                return response
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in http_limits.EMFILE_ERRNOS:
                self.log_limited(
                    f"exhausted:{exc.errno}",
                    logging.ERROR,
                    "cannot serve %s %s: %s (RLIMIT_NOFILE %d, %d public connections open)",
                    request.method,
                    request.path[:200],
                    exc.strerror,
                    http_limits.fd_limit(),
                    self.public_connections(),
                )
                return web.json_response(
                    {"error": "the server is short of resources: retry shortly"},
                    status=503,
                    headers={"Retry-After": str(http_limits.RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
                )
            self.log_limited(
                f"error:{type(exc).__name__}",
                logging.ERROR,
                "error serving %s %s",
                request.method,
                request.path[:200],
                exc_info=True,
            )
            return web.json_response({"error": "internal error"}, status=500)

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        self.metrics.responses(response.status).inc()
        if self.draining:
            # A keep-alive client (a browser, a CDN) would go on asking this origin until its port
            # closes: its next request opens a connection the Service sends to another replica.
            # (aiohttp wrote its Connection header before this hook: the header is set here too.)
            response.force_close()
            response.headers["Connection"] = "close"
        if request.method == "GET" and response.content_length:
            self.metrics.sent_bytes.inc(response.content_length)
        if not request.path.startswith(f"/{UPLOAD_PREFIX}/"):
            self._cors(request.headers.get("Origin"), response.headers)
        if request.match_info.handler in self._gated and not self.open_to_viewers():
            # Whatever the handler answered (playlist, segment, 206, 304, 404): a shared cache
            # must not keep it; the public cache headers are for once viewers are allowed.
            response.headers["Cache-Control"] = access.private_cache_control(response.headers.get("Cache-Control"))

    def _cors(self, origin: Optional[str], headers) -> None:
        allowed = self.config.cors_origins
        if "*" in allowed:
            headers["Access-Control-Allow-Origin"] = "*"
        elif origin and origin in allowed:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Vary"] = "Origin"
        else:
            return
        headers["Access-Control-Expose-Headers"] = CORS_EXPOSE

    async def _preflight(self, request: web.Request) -> web.Response:
        if request.path == f"/{WHEP_PATH}" and "Access-Control-Request-Method" not in request.headers:
            return await self._whep_options(request)
        whep = request.path.rstrip("/").split("/")[-2:].count(WHEP_PATH) > 0
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS" if whep else "GET, HEAD, OPTIONS",
                **({"Accept-Post": "application/sdp"} if whep and request.path.endswith(f"/{WHEP_PATH}") else {}),
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "86400",
            },
        )

    async def _time(self, request: web.Request) -> web.Response:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return web.Response(text=now, content_type="text/plain", headers={"Cache-Control": "no-store"})

    def _forbidden(self, reason: str) -> web.Response:
        """A viewer the access rules turn away: why, and the phase that decided it (never cached)."""
        return web.json_response(
            {"error": reason, "phase": self.desired.phase}, status=403, headers={"Cache-Control": "no-store"}
        )

    def _access(self, request: web.Request) -> access.Decision:
        token, _ = access.request_token(request.query, request.headers.get("Authorization"))
        if token is None and self.open_to_viewers():
            return OPEN_TO_ANYONE  # most requests: nothing to verify, no secret to look at
        decision = access.decide(
            self.open_to_viewers(), token, self.playback_secret.get(), self.config.livestream, time.time()
        )
        if not decision.allowed:
            self.metrics.refused.inc()
            self.log_limited(
                f"refused:{decision.reason}",
                logging.INFO,
                "refused playback of %s from %s: %s",
                request.path[:200],
                request.remote,
                decision.reason,
            )
        elif decision.token and "token" not in request.query:
            decision = access.Decision(
                True, token=None, member=decision.member
            )  # a header token is not written into URIs
        return decision

    def open_to_viewers(self) -> bool:
        return access.open_to_viewers(self.desired.phase, self.desired.viewers_allowed)

    def _cache(self, value: str, full_view: bool = False) -> str:
        # Before the stream opens the bytes are for token holders: no shared cache may keep them. Nor
        # may it keep a member's view (private segments) under a URL viewers ask for too.
        return value if self.open_to_viewers() and not full_view else value.replace("max-age", "private, max-age")

    async def _playback(self, request: web.Request) -> web.StreamResponse:
        try:
            path = safe_relpath(request.match_info["path"])
        except BadPath as exc:
            return web.json_response({"error": f"bad path: {exc}"}, status=400)
        kind = kind_of(path)
        if kind is None or not is_publishable(path):
            return web.json_response({"error": "not found"}, status=404)
        authorization = request.headers.get("Authorization")
        if authorization and access.internal_reader(authorization, self.read_token.get()):
            # Nothing to carry into URIs: the reader sends the header again.
            decision = access.Decision(True, member=True)
        else:
            decision = self._access(request)
        if not decision.allowed:
            return self._forbidden(decision.reason)
        query = f"token={quote(decision.token, safe='')}" if decision.token else ""
        headers = {"Cache-Control": self._cache(kind.cache, full_view=decision.member)}

        if path in self.dvr.renditions or (
            kind.playlist and path.endswith(".m3u8") and "_HLS_msn" in request.query and not self.storage.existing(path)
        ):
            return await self._media_playlist(
                request, path, kind.content_type, query, headers, public=not decision.member
            )
        if kind.playlist:
            if path.endswith(".m3u8") and not self.ended(path):
                await self._join_at_listing(path, public=not decision.member)
            hot = self.storage.hot(path)
            raw = hot.data if hot is not None else await self.run_io(self.storage.read, path)
            if raw is None:
                return web.json_response({"error": "not found"}, status=404, headers={"Cache-Control": "no-cache"})
            if path.endswith(".mpd"):
                host = request.headers.get("X-Forwarded-Host") or request.host
                text = self._served_mpd(path, raw, host, query)
                # Low latency: players follow the ServiceDescription's target, shorter than any stream's age.
                wait = young_stream_wait(text, time.time()) if self.dash_low_latency is None else 0.0
                if wait > 0:
                    await asyncio.sleep(wait)
                    hot = self.storage.hot(path)
                    raw = hot.data if hot is not None else await self.run_io(self.storage.read, path)
                    if raw is not None:
                        text = self._served_mpd(path, raw, host, query)
            else:
                text = add_query(raw.decode("utf-8", "replace"), query)
            return web.Response(text=text, content_type=kind.content_type, headers=headers)
        hot = self.storage.hot(path)
        if hot is not None and path not in self.dash_live:
            if not decision.member and self._private(path):
                self.metrics.refused.inc()
                return self._forbidden(NOT_BROADCAST)
            if not any(name in request.headers for name in _CONDITIONAL):
                headers["Content-Type"] = kind.content_type
                headers["Accept-Ranges"] = "bytes"
                response = web.Response(body=hot.data, headers=headers)
                response.etag, response.last_modified = hot.etag, hot.mtime
                return response
        try:
            full = self.storage.path(path)
        except BadPath as exc:
            return web.json_response({"error": f"bad path: {exc}"}, status=400)
        if not full.is_file() and path.startswith("hls/") and self._hinted(path):
            # The preload hint's part: answered as soon as it is stored (RFC 8216bis 6.2.6).
            await self._hold_until(path, lambda: full.is_file() or not self._hinted(path), self._hold_seconds())
        if path.startswith("dash/"):
            if path not in self.dash_live and self._dash_next(path) and not full.is_file():
                # An LL-DASH player asks for a segment from its first chunk's availability on (the
                # MPD's availabilityTimeOffset): held until that chunk's upload begins.
                await self._hold_until(path, lambda: path in self.dash_live or full.is_file(), self._hold_seconds())
            growing = self.dash_live.get(path)
            if growing is not None:
                if not decision.member and self._private(path):
                    self.metrics.refused.inc()
                    return self._forbidden(NOT_BROADCAST)
                headers["Content-Type"] = kind.content_type
                return await chunked.serve(request, growing, headers, self.metrics.sent_bytes.inc)
        if not full.is_file():
            return web.json_response({"error": "not found"}, status=404, headers={"Cache-Control": "no-store"})
        if not decision.member and self._private(path):
            self.metrics.refused.inc()
            return self._forbidden(NOT_BROADCAST)
        headers["Content-Type"] = kind.content_type
        return web.FileResponse(full, headers=headers)

    def _fast_answer(self, target: str, headers: fast_gets.Headers) -> Optional[list[bytes]]:
        """``_playback``'s answer to a viewer's plain GET of a media file in memory, its head prepared
        once per file; None for every other request (aiohttp then runs ``_playback``). The same status,
        headers and bytes as ``_playback`` and ``_on_prepare`` (tests/media/test_origin_fast_gets.py)."""
        # Files in memory are stored under their safe_relpath form: a hit is a valid path.
        path = target[1:]
        hot = self.storage.hot(path)
        if (
            hot is None
            or "authorization" in headers  # a token or the read token: _access decides
            or not self.open_to_viewers()  # a token is needed, and no shared cache may keep the answer
            or not _CONDITIONAL_LOWER.isdisjoint(headers)  # 206, 304, 412: FileResponse's
            or path in self.dash_live
            or self.draining  # _playback's answer closes the connection (_on_prepare)
        ):
            return None
        prepared = self._fast_heads.get(path)
        if prepared is None or prepared[0] is not hot:
            kind = kind_of(path)
            if kind is None or not kind.media or not is_publishable(path) or path in self.dvr.renditions:
                return None
            response = web.Response(
                body=hot.data,
                headers={
                    "Cache-Control": self._cache(kind.cache),
                    "Content-Type": kind.content_type,
                    "Accept-Ranges": "bytes",
                },
            )
            response.etag, response.last_modified = hot.etag, hot.mtime
            head = "HTTP/1.1 200 OK\r\n" + "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
            if len(self._fast_heads) >= FAST_HEADS:
                self._fast_heads.clear()
            prepared = self._fast_heads[path] = (hot, head.encode("latin-1"))
        if self._private(path):
            return None  # a viewer asking for the backstage preview: _playback refuses it
        cors: dict[str, str] = {}
        self._cors(headers.get("origin"), cors)
        self.metrics.responses(200).inc()
        self.metrics.sent_bytes.inc(len(hot.data))
        self.metrics.fast.inc()
        return [
            prepared[1]
            + b"Content-Length: %d\r\n" % len(hot.data)
            + fast_gets.date_header()
            + _SERVER_HEADER
            + "".join(f"{name}: {value}\r\n" for name, value in cors.items()).encode("latin-1")
            + b"\r\n",
            hot.data,
        ]

    def _served_mpd(self, path: str, raw: bytes, host: str, query: str) -> str:
        """The MPD as viewers get it, rewritten once per upload, host and token (not per request)."""
        key = (path, raw, host, query)  # the stored bytes are one object while unchanged: hashed once
        cached = self._mpd_cache.get(key)
        if cached is None:
            # Scheme-relative: right behind a TLS-terminating ingress as well as on plain HTTP.
            cached = rewrite_mpd(
                raw.decode("utf-8", "replace"),
                f"//{host}/time",
                self.config.dvr_window_seconds if self.config.dvr_enabled else None,
                query,
                low_latency=self.dash_low_latency,
            )
            if len(self._mpd_cache) >= MPD_CACHE_ENTRIES:
                self._mpd_cache.clear()  # tokens differ per viewer: never let them pile up
            self._mpd_cache[key] = cached
        return cached

    def _dash_next(self, path: str) -> bool:
        """Whether ``path`` is the DASH segment right after one being uploaded or just uploaded."""
        if self.dash_low_latency is None:
            return False
        previous = chunked.previous_segment(path)
        if previous is None:
            return False
        if previous in self.dash_live:
            return True
        uploaded = self.dash_uploaded_at.get(previous)
        return uploaded is not None and time.monotonic() - uploaded < self._hold_seconds()

    def _hinted(self, path: str) -> bool:
        return any(r.hint == path for r in self.dvr.renditions.values())

    async def _media_playlist(
        self, request: web.Request, path: str, content_type: str, query: str, headers: dict[str, str], public: bool
    ) -> web.Response:
        """The DVR's media playlist; for LL-HLS clients blocking (``_HLS_msn``, ``_HLS_part``) and delta
        (``_HLS_skip``) requests too."""

        def refuse(status: int, error: str) -> web.Response:
            return web.json_response({"error": error}, status=status, headers={"Cache-Control": "no-store"})

        try:
            msn = int(request.query["_HLS_msn"]) if "_HLS_msn" in request.query else None
            part = int(request.query["_HLS_part"]) if "_HLS_part" in request.query else None
        except ValueError:
            return refuse(400, "_HLS_msn and _HLS_part must be integers")
        if part is not None and msn is None:
            return refuse(400, "_HLS_part needs _HLS_msn")
        if (msn is not None and msn < 0) or (part is not None and part < 0):
            return refuse(400, "_HLS_msn and _HLS_part cannot be negative")
        skip = request.query.get("_HLS_skip") in ("YES", "v2")
        if msn is not None:
            states: list[str] = []

            def settled() -> bool:
                states.append(self.dvr.wait_state(path, public, msn, part, self.ended(path)))
                return states[-1] != "wait"

            if not await self._hold_until(path, settled, self._hold_seconds(path)):
                segment = f"segment {msn}" + (f" part {part}" if part is not None else "")
                return refuse(503, f"{segment} is not available yet: ask again")
            if states[-1] == "bad":
                asked = f"_HLS_msn={msn}" + (f" _HLS_part={part}" if part is not None else "")
                return refuse(400, f"{asked} is too far beyond the end of the playlist")
            rendition = self.dvr.renditions[path]
            headers = {
                "Cache-Control": self._cache(
                    f"max-age={BLOCKING_CACHE_TARGET_DURATIONS * rendition.target_duration}", full_view=not public
                )
            }
        text = self.dvr.render(path, ended=self.ended(path), query=query, public=public, skip=skip)
        if text is None:
            return web.json_response({"error": "no segments yet"}, status=404, headers={"Cache-Control": "no-cache"})
        return web.Response(text=text, content_type=content_type, headers=headers)

    async def _join_at_listing(self, master: str, public: bool) -> None:
        """Hold a standard-HLS master playlist until its renditions list their next segment, so the
        viewer starts on a fresh live edge (``Dvr.join_targets``)."""
        targets = self.dvr.join_targets(master, public, time.monotonic())
        if not targets:
            return
        loop = asyncio.get_running_loop()
        target_duration = max(self.dvr.renditions[p].target_duration for p in targets)
        deadline = loop.time() + JOIN_HOLD_MAX_PHASE * target_duration
        for playlist, msn in targets.items():

            def listed(playlist: str = playlist, msn: int = msn) -> bool:
                return self.dvr.wait_state(playlist, public, msn + 1, None, self.ended(playlist)) != "wait"

            if not await self._hold_until(playlist, listed, deadline - loop.time()):
                return  # late: the viewer gets the edge there is

    def _private(self, path: str) -> bool:
        """A stored media file viewers must not get: made while the origin was not public (backstage preview)."""
        if path.startswith("hls/"):
            return not self.dvr.public_file(path)
        return path in self.private_files and not self.dash_protected(path)

    async def _player(self, request: web.Request) -> web.Response:
        decision = self._access(request)
        if not decision.allowed:
            page = TEMPLATES.get_template("refused.html.j2").render(reason=decision.reason)
            return web.Response(text=page, status=403, content_type="text/html")
        recordings = request.query.getall("src", [])
        fmt = request.query.get("format", "cmaf")
        fmt = fmt if fmt in PLAYER_FORMATS or fmt == "whep" else "cmaf"
        if fmt == "whep" and not recordings:
            return self._whep_player(request, decision)
        if not HLS_JS.is_file():
            return web.Response(
                status=503,
                text="The player is not available: hls.js was not built into this image (run scripts/build-player).\n",
            )
        if recordings:
            # A Recording's VOD playlist(s) (its status.playback), played in order; never the live tier.
            refused = next((url for url in recordings if not vod_source_ok(url)), None)
            if refused is not None:
                return web.Response(
                    status=400,
                    text=(
                        f"?src= must be an absolute http(s) URL of an HLS playlist (a Recording's status.playback.url or "
                        f"parts[].url, URL-encoded), not {refused[:200]!r}.\n"
                    ),
                )
            sources, low_latency, fmt = recordings, False, "cmaf"
        else:
            if fmt == "dash" and not DASH_JS.is_file():
                return web.Response(
                    status=503,
                    text="The DASH player is not available: dash.js was not built into "
                    "this image (run scripts/build-player).\n",
                )
            source = PLAYER_FORMATS[fmt]
            if decision.token:
                source += f"?token={quote(decision.token, safe='')}"
            sources, low_latency = [source], self.config.low_latency
        ll = self.dash_low_latency if low_latency else None
        page = TEMPLATES.get_template("player.html.j2").render(
            source=sources[0],
            sources=sources,
            vod=bool(recordings),
            projection=self.config.projection,
            livestream=self.config.livestream,
            engine="dash" if fmt == "dash" else "hls",
            player_js="static/vendor/dash.all.min.js" if fmt == "dash" else "static/vendor/hls.min.js",
            autoplay=request.query.get("autoplay", "1") != "0",
            low_latency=low_latency,
            # dash.js in the low-latency tier holds the MPD's ServiceDescription, stated here too so the
            # page says what it plays at (and keeps to it should a proxy strip the MPD's).
            live_delay=ll.target_seconds if ll else None,
            max_drift=ll.max_seconds - ll.target_seconds if ll else None,
            rate_min=LL_MIN_PLAYBACK_RATE - 1,
            rate_max=LL_MAX_PLAYBACK_RATE - 1,
            hls_max_rate=LL_HLS_MAX_PLAYBACK_RATE,
        )
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-cache"})

    def _whep_player(self, request: web.Request, decision: access.Decision) -> web.Response:
        """``/player?format=whep``: the browser's own RTCPeerConnection against ``whep`` (no library)."""
        if not self.config.whep_url:
            return web.Response(
                status=404,
                text="WebRTC (WHEP) playback is not enabled for this livestream "
                "(broadcasting.outputs.webrtc): play ?format=cmaf, ts or dash.\n",
            )
        source = WHEP_PATH + (f"?token={quote(decision.token, safe='')}" if decision.token else "")
        page = TEMPLATES.get_template("player.html.j2").render(
            source=source,
            sources=[source],
            vod=False,
            projection=self.config.projection,
            livestream=self.config.livestream,
            engine="whep",
            player_js=None,
            autoplay=request.query.get("autoplay", "1") != "0",
            low_latency=True,
            live_delay=None,
            max_drift=None,
            rate_min=None,
            rate_max=None,
            hls_max_rate=None,
        )
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        """A finished recording on the recorder's volume (``/recordings/<part>.m3u8`` and ``.mp4``),
        read from the recorder and passed on: the same access rules as the live stream, byte
        ranges as the recorder answers them, the token carried into the playlist's URIs."""
        name = request.match_info["file"]
        if not RECORDING_FILE.match(name):
            return web.json_response({"error": "not a recording part (<session>_partNNNN.m3u8 or .mp4)"}, status=404)
        decision = self._access(request)
        if not decision.allowed:
            return self._forbidden(decision.reason)
        if not self.config.recorder_url:
            return web.json_response({"error": "this livestream has no recorder: no recordings to serve"}, status=404)
        headers = {"Authorization": f"Bearer {self.agent_token.get() or ''}"}
        if "Range" in request.headers:
            headers["Range"] = request.headers["Range"]
        url = f"{self.config.recorder_url.rstrip('/')}/vod/{name}"
        try:
            async with self._recorder_http().get(url, headers=headers) as upstream:
                if upstream.status not in (200, 206):
                    reason = (await upstream.text())[:300]
                    status = 404 if upstream.status == 404 else 502
                    return web.json_response(
                        {"error": f"the recorder answered {upstream.status}: {reason}"},
                        status=status,
                        headers={"Cache-Control": "no-cache"},
                    )
                passed = {
                    k: upstream.headers[k]
                    for k in ("Content-Type", "Content-Range", "Accept-Ranges", "Last-Modified", "ETag")
                    if k in upstream.headers
                }
                passed["Cache-Control"] = upstream.headers.get("Cache-Control", "no-cache")
                if name.endswith(".m3u8"):
                    text = await upstream.text()
                    if decision.token:
                        text = add_query(text, f"token={quote(decision.token, safe='')}")
                    return web.Response(
                        text=text,
                        status=upstream.status,
                        headers={**passed, "Content-Type": "application/vnd.apple.mpegurl"},
                    )
                response = web.StreamResponse(status=upstream.status, headers=passed)
                if upstream.content_length is not None:
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(256 * 1024):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as exc:
            return web.json_response(
                {"error": f"the recorder does not answer ({exc}); its recordings play again once its pod runs"},
                status=502,
                headers={"Cache-Control": "no-cache"},
            )

    def _recorder_http(self) -> aiohttp.ClientSession:
        if self._recorder_session is None or self._recorder_session.closed:
            self._recorder_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
            )
        return self._recorder_session

    # ------------------------------------------------------------------------- WHEP
    async def _whep_post(self, request: web.Request) -> web.Response:
        """A WHEP viewer's offer (draft-ietf-wish-whep): the same access rules as HLS (a playback token
        before the stream is open, as ``Authorization: Bearer`` or ``?token=``), then the transcoder,
        which answers with its SDP and the session's Location (here, relative: ``whep/<id>``)."""
        if not self.config.whep_url:
            return web.json_response(
                {"error": "WHEP playback is not enabled for this livestream: play HLS or DASH (status.playback)"},
                status=404,
            )
        refused = self._whep_refusal(request)
        if refused is not None:
            return refused
        if self.whep_sessions.full():
            return web.json_response(
                {"error": "this origin has its maximum of WebRTC sessions: play HLS or DASH, or retry later"},
                status=503,
                headers={"Retry-After": "2", "Cache-Control": "no-store"},
            )
        if request.content_type != "application/sdp":
            return web.json_response(
                {
                    "error": f"expected Content-Type application/sdp (an SDP offer), got "
                    f"{request.content_type or 'none'}"
                },
                status=415,
            )
        offer = await request.read()
        if len(offer) > MAX_SDP_BYTES:
            return web.json_response({"error": "the SDP offer is too large"}, status=413)
        # Let in now; a member's token is verified again for as long as the session plays. The transcoder
        # keeps it with the session, so that another replica, or this one restarted, can check it too.
        presented, _ = access.request_token(request.query, request.headers.get("Authorization"))
        token = presented if self._access(request).member else None
        extra = {signalling.PLAYBACK_TOKEN_HEADER: token} if token else {}
        response = await self._to_transcoder("POST", self.config.whep_url, offer, extra)
        session = whep.session_id(response.headers.get("Location")) if response.status == 201 else None
        if session is not None:
            self.whep_sessions.admit(session, token, time.monotonic())
            # The desired state may have changed while the transcoder answered.
            self.end_refused_whep_sessions()
        return response

    async def _whep_options(self, request: web.Request) -> web.Response:
        """``OPTIONS /whep`` (not a CORS preflight): the ICE servers a viewer should offer with, in ``Link``
        headers, TURN credentials included; so only for those who may watch."""
        if not self.config.whep_url:
            return web.json_response({"error": "WHEP playback is not enabled for this livestream"}, status=404)
        refused = self._whep_refusal(request)
        if refused is not None:
            return refused
        return await self._to_transcoder("OPTIONS", self.config.whep_url, None)

    def _whep_refusal(self, request: web.Request) -> Optional[web.Response]:
        """What HLS would refuse: a closed stream without a valid token, and while the outputs are not
        broadcast to viewers (``publicBroadcasting`` off), anyone but a member."""
        reason = access.live_refusal(self._access(request), self.public_now())
        if reason is None:
            return None
        return web.json_response(
            {"error": reason, "phase": self.desired.phase}, status=403, headers={"Cache-Control": "no-store"}
        )

    async def _whep_session(self, request: web.Request) -> web.Response:
        """``DELETE`` ends a session; whoever holds its Location (an unguessable id) may. PATCH (trickle ICE)
        is answered by the transcoder: not supported."""
        if not self.config.whep_url:
            return web.json_response({"error": "WHEP playback is not enabled for this livestream"}, status=404)
        session = request.match_info["id"]
        if not re.fullmatch(r"[0-9a-f]{32}", session):
            return web.json_response({"error": "no such WHEP session"}, status=404)
        body = await request.read() if request.method == "PATCH" else None
        response = await self._to_transcoder(request.method, f"{self.config.whep_url.rstrip('/')}/{session}", body)
        if request.method == "DELETE" and response.status in (200, 404):
            self.whep_sessions.forget(session)  # ended (or unknown) at the transcoder: nothing left to enforce
        return response

    def end_refused_whep_sessions(self) -> None:
        """End at the transcoder every session this replica let in that the access rules now refuse."""
        if not self.config.whep_url or not len(self.whep_sessions):
            return
        open_, public = self.open_to_viewers(), self.public_now()
        secret, now = self.playback_secret.get(), time.time()

        def rule(token: Optional[str]) -> Optional[str]:
            return access.live_refusal(access.decide(open_, token, secret, self.config.livestream, now), public)

        for session, reason in self.whep_sessions.refused(rule):
            self._spawn_whep(self._end_whep_session(session.id, reason))

    def _spawn_whep(self, work: Coroutine[Any, Any, None]) -> None:
        """WHEP sessions' requests to the transcoder, off the janitor's pass (a slow transcoder delays none)."""
        task = asyncio.get_running_loop().create_task(work)
        self._whep_tasks.add(task)
        task.add_done_callback(self._whep_tasks.discard)

    async def _end_whep_session(self, session: str, reason: str) -> None:
        assert self.config.whep_url
        url = f"{self.config.whep_url.rstrip('/')}/{session}"
        headers = {
            "Authorization": f"Bearer {self.agent_token.get() or ''}",
            signalling.END_REASON_HEADER: reason.encode("ascii", "replace").decode()[:300],
        }
        try:
            async with self._recorder_http().delete(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as upstream:
                status = upstream.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            status, reason = 0, f"{reason} (the transcoder does not answer: {exc or type(exc).__name__})"
        if status in (200, 404):  # 404: the transcoder had ended it already
            self.whep_sessions.forget(session)
            if status == 200:
                self.metrics.whep_ended.inc()
                log.info("ended WHEP session %s: %s", session[:8], reason)
            return
        self.log_limited(
            "whep-end", logging.WARNING, "could not end WHEP session %s (%s): %s", session[:8], status, reason
        )
        # Asked again after a pause, not at every pass: a transcoder down would get a storm of DELETEs
        # (and a transcoder that restarted has no sessions left: its list then forgets them).
        await asyncio.sleep(whep.END_RETRY_SECONDS)
        self.whep_sessions.end_failed(session)

    async def _reconcile_whep_sessions(self) -> None:
        """Forget the sessions the transcoder ended (the viewer left, the broadcast stopped), take on those
        another replica let in or this pod did before it restarted: the table holds what plays."""
        now = time.monotonic()
        if not self.config.whep_url or now - self._whep_reconciled_at < whep.RECONCILE_SECONDS:
            return
        self._whep_reconciled_at = now
        headers = {"Authorization": f"Bearer {self.agent_token.get() or ''}"}
        try:
            async with self._recorder_http().get(
                self.config.whep_url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as upstream:
                if upstream.status != 200:
                    raise aiohttp.ClientResponseError(
                        upstream.request_info, (), status=upstream.status, message=upstream.reason or ""
                    )
                listed = whep.listed_sessions(await upstream.json())
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            # No transcoder while the stream is not live: only worth a warning while sessions are held.
            self.log_limited(
                "whep-list",
                logging.WARNING if len(self.whep_sessions) else logging.DEBUG,
                "cannot list the transcoder's WHEP sessions: %s",
                exc or type(exc).__name__,
            )
            return
        gone, adopted = self.whep_sessions.reconcile(listed, now)
        if gone or adopted:
            log.info(
                "WHEP sessions: forgot %d the transcoder ended, took on %d let in elsewhere or before a restart",
                len(gone),
                len(adopted),
            )
        if adopted:
            self.end_refused_whep_sessions()

    async def _to_transcoder(
        self, method: str, url: str, body: Optional[bytes], extra_headers: Optional[dict[str, str]] = None
    ) -> web.Response:
        headers = {"Authorization": f"Bearer {self.agent_token.get() or ''}", **(extra_headers or {})}
        if body is not None:
            headers["Content-Type"] = "application/sdp"
        try:
            async with self._recorder_http().request(
                method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=20)
            ) as upstream:
                text = await upstream.text()
                passed = {
                    k: v
                    for k, v in upstream.headers.items()
                    if k in ("Content-Type", "ETag", "Retry-After", "Allow", "Accept-Post")
                }
                if upstream.status in (401, 403):
                    # The agent token is the operator's business, never the viewer's: a pod out of step.
                    log.error(
                        "the transcoder refused the origin's WHEP %s (%s): is the agent token the same?",
                        method,
                        upstream.status,
                    )
                    return web.json_response({"error": "the transcoder refused the origin: retry shortly"}, status=502)
                response = web.Response(
                    status=upstream.status, text=text or None, headers={**passed, "Cache-Control": "no-store"}
                )
                # Link repeats (one ICE server each): all of them.
                for link in upstream.headers.getall("Link", []):
                    response.headers.add("Link", link)
                location = upstream.headers.get("Location")
                if location:
                    # Relative to the POSTed URL, so it works behind any path prefix of the playback route.
                    response.headers["Location"] = f"{WHEP_PATH}/{location.rstrip('/').rsplit('/', 1)[-1]}"
                return response
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return web.json_response(
                {
                    "error": f"the transcoder does not answer ({exc or type(exc).__name__}): the "
                    "stream is not live, or its transcoder is restarting"
                },
                status=503,
                headers={"Retry-After": "2", "Cache-Control": "no-store"},
            )

    async def _hls_js(self, request: web.Request) -> web.StreamResponse:
        if not HLS_JS.is_file():
            return web.Response(status=503, text="hls.js was not built into this image: run scripts/build-player.\n")
        return web.FileResponse(
            HLS_JS, headers={"Content-Type": "application/javascript", "Cache-Control": "max-age=3600"}
        )

    async def _dash_js(self, request: web.Request) -> web.StreamResponse:
        if not DASH_JS.is_file():
            return web.Response(status=503, text="dash.js was not built into this image: run scripts/build-player.\n")
        return web.FileResponse(
            DASH_JS, headers={"Content-Type": "application/javascript", "Cache-Control": "max-age=3600"}
        )

    # ------------------------------------------------------------------------- background
    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_INTERVAL)
            try:
                # Tokens expire with no request to notice it: looked at every pass.
                self.end_refused_whep_sessions()
                self._spawn_whep(self._reconcile_whep_sessions())
            except Exception:  # as the sweep: never stop for good
                log.exception("WHEP session check failed")
            try:
                await self._sweep()
            except Exception:  # the sweep must never stop for good
                log.exception("janitor sweep failed")

    async def _sweep(self) -> None:
        now = time.monotonic()
        await self._persist()
        doomed = self.dvr.due(now)
        if self.config.dvr_enabled:
            cutoff = now - self.config.dvr_window_seconds - GRACE_MIN_SECONDS
            while self.dash_files and self.dash_files[0][0] < cutoff:
                uploaded, path = self.dash_files.popleft()
                if self.dash_uploaded_at.get(path) != uploaded:
                    continue  # re-uploaded since: a later entry decides
                if self.dash_protected(path):
                    self.dash_uploaded_at[path] = now  # an init the MPD still needs: look again later
                    self.dash_files.append((now, path))
                    continue
                del self.dash_uploaded_at[path]
                doomed.append(path)
        else:
            # The transcoder's DELETEs govern DASH without DVR; only remember recent uploads.
            while self.dash_files and self.dash_files[0][0] < now - 3600:
                self.dash_files.popleft()
        if doomed:
            self.private_files.difference_update(doomed)
            self.metrics.deleted.inc(await self.run_io(self.storage.delete, doomed))
            self.update_dvr_metrics()

    async def _persist(self) -> None:
        records = self.dvr.drain_journal()
        if self.journal.needs_compaction(sum(len(r.segments) + 2 for r in self.dvr.renditions.values())):
            snapshot = self.dvr.snapshot()
            try:
                await self.run_io(self.journal.rewrite, snapshot)
            except OSError as exc:
                log.error("cannot compact the DVR journal: %s", exc)
        elif records:
            await self.run_io(self.journal.append, records)

    def _adopt_existing_files(self) -> None:
        """Start from what a previous process left: its DVR index, manifests and DASH segments.

        HLS files the replayed index does not reference can never be served again: deleted.
        """
        records = self.journal.load()
        if records:
            bad = self.dvr.replay(records, time.monotonic())
            log.info(
                "DVR restored from the journal: %s%s",
                ", ".join(f"{p} {len(r.segments)} segments" for p, r in self.dvr.renditions.items()) or "empty",
                f" ({bad} unreadable records skipped)" if bad else "",
            )
        try:
            self.journal.rewrite(self.dvr.snapshot())
        except OSError as exc:
            log.error(
                "cannot write the DVR journal %s: %s; the DVR would not survive a restart", self.journal.path, exc
            )
        self.update_dvr_metrics()
        for rel, _ in self.storage.walk("hls", (".m3u8",)):
            self.manifests.add(rel)
        for rel, _ in self.storage.walk("dash", (".mpd",)):
            self.manifests.add(rel)
            text = (self.storage.read(rel) or b"").decode("utf-8", "replace")
            self.mpds[rel] = (time_shift_buffer_depth(text), init_patterns(text))
        orphans = [
            rel
            for rel, _ in self.storage.walk("hls", (".m4s", ".mp4", ".m4v", ".m4a", ".ts", ".aac", ".vtt"))
            if not self.dvr.keeps(rel) and rel not in self.dvr.pending_delete
        ]
        if orphans:
            log.info("deleting %d HLS files no DVR playlist references (left by a previous run)", len(orphans))
            self.storage.delete(orphans)
        now = time.monotonic()
        for rel, mtime in sorted(
            self.storage.walk("dash", (".m4s", ".mp4", ".m4v", ".m4a", ".webm")), key=lambda x: x[1]
        ):
            uploaded = now - max(0.0, time.time() - mtime)
            self.dash_uploaded_at[rel] = uploaded
            self.dash_files.append((uploaded, rel))
            # Nothing tells whether a previous process made it public: members only.
            self.private_files.add(rel)
        self.private_files.add(SCREENSHOT)

    async def start_public(self, fds: http_limits.FdBudget) -> None:
        # Viewers are mostly at the live edge, answered from memory: a connection is its socket alone
        # (held LL-HLS reloads too). A DVR rewind read from the volume needs a second fd while it
        # is sent; short of one, that request gets a 503 with Retry-After (see _errors).
        limits = fds.allot(
            "public",
            max_connections=PUBLIC_CONNECTIONS,
            fds_per_connection=1,
            backlog=PUBLIC_BACKLOG,
            trusted_clients=self.config.trusted_proxies,
        )
        self.public_guard = http_limits.ConnectionGuard(
            limits,
            self.metrics.connections,
            log,
            client_cap_hint="; if that address is a proxy carrying many viewers (an ingress controller, a gateway, "
            "a CDN), list it in the operator's ONAIR_PLAYBACK_TRUSTED_PROXIES (chart: livestreams.playback."
            "trustedProxies)",
        )
        # No handler cancellation: ffmpeg closes its socket right after the last chunk without
        # reading our response, and the upload must still be stored.
        self._public_runner = web.AppRunner(
            self.public,
            access_log=None,
            keepalive_timeout=limits.idle_timeout,
            shutdown_timeout=ORIGIN_FINISH_SECONDS,
        )
        await self._listen(
            self._public_runner, self.config.http_port, "httpPort", self.public_guard, fast_answer=self._fast_answer
        )
        log.info(
            "origin for %s serving on http://%s:%s (phase %s, DVR %s, uploads %s, player %s)",
            self.config.livestream,
            self.config.listen_host,
            self.config.http_port,
            self.desired.phase,
            f"{self.config.dvr_window_seconds}s" if self.config.dvr_enabled else "off",
            "enabled" if self.upload_token.get() else "DISABLED: no upload token configured",
            "ready" if HLS_JS.is_file() else "unavailable: hls.js not built",
        )
        log.log(
            logging.WARNING if fds.short else logging.INFO,
            "public port: %s (RLIMIT_NOFILE %d%s)",
            limits.describe(),
            fds.limit,
            ": raise it for more" if fds.short else "",
        )

    async def start_upload(self, fds: http_limits.FdBudget) -> None:
        # Allotted before the viewers' listener, so no number of viewers can take the fds uploads
        # need. One transcoder uploads a handful of files at a time from one address: all its own.
        limits = fds.allot("upload", max_connections=UPLOAD_CONNECTIONS, max_per_client=UPLOAD_CONNECTIONS)
        self.upload_guard = http_limits.ConnectionGuard(limits, self.metrics.connections, log)
        # No handler cancellation (as on the public port): ffmpeg closes its socket right after the
        # last chunk without reading our response, and the upload must still be stored.
        self._upload_runner = web.AppRunner(
            self.upload, access_log=None, handler_cancellation=False, keepalive_timeout=limits.idle_timeout
        )
        await self._listen(self._upload_runner, self.config.upload_port, "uploadPort", self.upload_guard)
        log.info(
            "transcoder uploads on http://%s:%s/%s/", self.config.listen_host, self.config.upload_port, UPLOAD_PREFIX
        )

    async def _listen(
        self,
        runner: web.AppRunner,
        port: int,
        setting: str,
        guard: http_limits.ConnectionGuard,
        fast_answer: Optional[fast_gets.Answer] = None,
    ) -> None:
        def guarded(runner: web.AppRunner, host: str, port: int) -> web.BaseSite:
            return http_limits.GuardedSite(runner, host, port, guard, fast_answer=fast_answer)

        await listen(runner, self.config.listen_host, port, "origin", setting, site=guarded)

    async def prepare(self) -> None:
        # Every port of the origin takes requests from anyone: scanners' garbage is one line each, rate-limited.
        http_limits.install_malformed_http_filter(
            "malformed HTTP request refused (%(status)s) from %(client)s: %(reason)s"
        )
        http_limits.quiet_library_logs()
        self.storage.prepare()
        await self.run_io(self._adopt_existing_files)

    async def start(self) -> None:
        http_limits.install_loop_exception_handler(asyncio.get_running_loop(), log)
        fds = http_limits.FdBudget.of_this_process()
        await self.start_upload(fds)
        # Uploads flow in while a peer's index is copied; viewers come once it is in place.
        # A peer with a stream (a restart, a rolling update): copy again once uploads flow here too.
        if await self.replicas.catch_up() and (self.dvr.playlists() or self.dvr.fresh):
            await self.replicas.settle()
        await self.start_public(fds)
        self._janitor = asyncio.get_running_loop().create_task(self._janitor_loop(), name="origin-janitor")
        self._replica_watch = asyncio.get_running_loop().create_task(self.replicas.watch(), name="origin-replicas")

    async def drain(self) -> None:
        """Not ready at once, serving on for ``drain_seconds``: the Service's endpoints and every
        kube-proxy drop this pod meanwhile, so no viewer's request meets a closed port (a rolling
        update, a scale-down, a pod evicted). Uploads keep coming, so what it serves stays live;
        requests in flight when the port closes get ``ORIGIN_FINISH_SECONDS`` more (``stop``)."""
        self.draining = True
        if self.config.drain_seconds <= 0 or self._public_runner is None:
            return
        log.info(
            "stopping: /readyz answers 503, viewers are served %gs more while load balancers drop this origin",
            self.config.drain_seconds,
        )
        await asyncio.sleep(self.config.drain_seconds)
        log.info("drained: the public port closes (%d connections open)", self.public_connections())

    async def stop(self) -> None:
        if self._janitor:
            self._janitor.cancel()
        for task in list(self._whep_tasks):
            task.cancel()
        if self._replica_watch:
            self._replica_watch.cancel()
        if self._public_runner:
            await self._public_runner.cleanup()
        if self._upload_runner:
            await self._upload_runner.cleanup()
        if self._recorder_session is not None:
            await self._recorder_session.close()
        self.journal.append(self.dvr.drain_journal())
        self.journal.close()


def main(argv: list[str]) -> int:
    # libuv's loop: every viewer's request is a few event-loop turns, and on the live edge the
    # origin is nothing but that (bench/origin_load.py measures the difference).
    return run_role("origin", argv, OriginConfig, _serve, loop_factory=uvloop.new_event_loop)


async def _serve(config: OriginConfig) -> None:
    await OriginAgent(config).run()
