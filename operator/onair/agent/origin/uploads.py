"""``PUT``/``DELETE /upload/<path>``: how the transcoder hands its output to the origin.

The transcoder's packager PUTs every file it publishes (one request per file) and DELETEs the
segments that leave its own short window. Media playlists are not stored: they feed the DVR
index (``dvr.py``), which decides what is served and which DELETEs to ignore.

In the low-latency tier DASH segments are readable while their upload runs (``chunked``): the
transcoder streams each one as ffmpeg writes it, and viewers get its chunks as they arrive. Plain
DASH keeps whole-file uploads, served once stored.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import time
from typing import TYPE_CHECKING, Optional

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from onair.agent.http_limits import EMFILE_ERRNOS, RETRY_AFTER_SECONDS, fd_limit
from onair.agent.hls import MediaPlaylist, PlaylistError, is_master, parse_media_playlist

from .chunked import GrowingFile
from .dash import MpdError, check_mpd, init_patterns, time_shift_buffer_depth
from .replicas import ALIVE_PATH, RECENT_PATH, RESYNC_PATH, STATE_PATH
from .paths import SCREENSHOT, BadPath, Kind, is_publishable, kind_of, resolve_uri, safe_relpath

if TYPE_CHECKING:
    from .server import OriginAgent

log = logging.getLogger("onair.agent.origin")
# A media playlist lists a short live window; a master a few renditions. Megabytes of
# "playlist" are a bug or an attack.
MAX_MANIFEST_BYTES = 2 * 1024 * 1024
# ffmpeg starts PUTting the playlist that lists a segment without waiting for the segment's
# response, so the two race; the playlist waits this long for segments still arriving.
INFLIGHT_WAIT_SECONDS = 10.0
# A sender that stops sending mid-body holds a connection for nothing. ffmpeg streams a segment
# as it encodes it: gaps last at most a segment's duration.
UPLOAD_STALL_SECONDS = 30.0


class _Aborted(Exception):
    """The uploader went away before the body was complete."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Uploads:
    def __init__(self, origin: "OriginAgent") -> None:
        self.origin = origin
        self.inflight: dict[str, asyncio.Event] = {}

    def routes(self, prefix: str) -> list[web.RouteDef]:
        return [
            web.get(f"/{prefix}/{ALIVE_PATH}", self.alive),
            web.get(f"/{prefix}/{STATE_PATH}", self.replica_state),
            web.get(f"/{prefix}/{RECENT_PATH}", self.recent),
            web.post(f"/{prefix}/{RESYNC_PATH}", self.resync),
            web.get(f"/{prefix}/{{path:.*}}", self.get),
            web.put(f"/{prefix}/{{path:.*}}", self.put),
            web.delete(f"/{prefix}/{{path:.*}}", self.delete),
        ]

    # ------------------------------------------------------------------------- peer replicas
    async def alive(self, request: web.Request) -> web.Response:
        """The transcoder's probe of a replica it left out (nothing to protect: no token)."""
        return web.Response(status=204)

    async def replica_state(self, request: web.Request) -> web.Response:
        """A peer replica copies this one's index (``replicas.py``)."""
        denied = self._authorize(request)
        if denied:
            return self._refuse(request, denied)
        state = await self.origin.replicas.state()
        if state is None:
            return _error(503, "this replica is itself copying a peer's DVR: ask another one")
        return web.json_response(state)

    async def recent(self, request: web.Request) -> web.Response:
        """A peer replica compares its last segments with these (``replicas.Replicas.watch``)."""
        denied = self._authorize(request)
        if denied:
            return self._refuse(request, denied)
        recent = self.origin.replicas.recent()
        if recent is None:
            return _error(503, "this replica is copying a peer's DVR: nothing to compare yet")
        return web.json_response(recent)

    async def resync(self, request: web.Request) -> web.Response:
        """The transcoder could not deliver every upload here: copy a peer's index again."""
        denied = self._authorize(request)
        if denied:
            return self._refuse(request, denied)
        replicas = self.origin.replicas
        if not replicas.enabled:
            return _error(409, "this origin has no peer replicas (peerUploadUrls) to copy the DVR from")
        peer = await replicas.catch_up()
        return web.json_response({"copiedFrom": peer})

    async def get(self, request: web.Request) -> web.StreamResponse:
        """A stored file, for a peer replica copying this one's DVR (any state of it: private too)."""
        denied = self._authorize(request)
        if denied:
            return self._refuse(request, denied)
        try:
            path = safe_relpath(request.match_info["path"])
        except BadPath as exc:
            return _error(400, f"bad path: {exc}")
        body = await self.origin.run_io(self.origin.storage.read, path)
        if body is None:
            return _error(404, f"{path} is not stored here")
        return web.Response(body=body, content_type="application/octet-stream")

    # ------------------------------------------------------------------------- checks
    def _authorize(self, request: web.Request) -> Optional[web.Response]:
        expected = self.origin.upload_token.get()
        if not expected:
            return _error(403, "uploads are disabled: no upload token is configured (uploadTokenFile)")
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer " or not header[7:].strip():
            return web.json_response(
                {"error": "upload requires Authorization: Bearer <upload token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="onair-origin-upload"'},
            )
        if not hmac.compare_digest(header[7:].strip().encode(), expected.encode()):
            return _error(403, "wrong upload token")
        return None

    def _target(self, request: web.Request) -> tuple[Optional[str], Optional[web.Response]]:
        try:
            path = safe_relpath(request.match_info["path"])
        except BadPath as exc:
            return None, _error(400, f"bad upload path: {exc}")
        if not is_publishable(path):
            return None, _error(
                400,
                "not part of the output tree: expected hls/..., dash/... or screenshot.jpg "
                "with a playlist, manifest, segment or image extension",
            )
        return path, None

    def _admit(self, request: web.Request) -> tuple[str, Optional[web.Response]]:
        """The path a PUT or DELETE may act on; else its refusal, counted and logged."""
        refusal = self._authorize(request)
        if refusal is None:
            path, refusal = self._target(request)
            if path is not None:
                return path, None
        assert refusal is not None
        return "", self._refuse(request, refusal)

    def _refuse(self, request: web.Request, response: web.Response, path: str = "") -> web.Response:
        kind = "unknown"
        if path:
            k = kind_of(path)
            kind = "playlist" if k and k.playlist else ("screenshot" if path == SCREENSHOT else "segment")
        self.origin.metrics.uploads.labels(kind=kind, result="refused").inc()
        self.origin.log_limited(
            f"upload-refused:{response.status}",
            logging.WARNING,
            "refused %s /upload/%s from %s: HTTP %s %s",
            request.method,
            request.match_info.get("path", "")[:200],
            request.remote,
            response.status,
            getattr(response, "text", "") or "",
        )
        return response

    async def _body(self, request: web.Request, cap: int, growing: Optional[GrowingFile] = None) -> Optional[bytes]:
        """The request body, or None as soon as it exceeds ``cap`` (ffmpeg sends chunked bodies);
        each chunk is also appended to ``growing`` as it arrives."""
        if request.content_length is not None and request.content_length > cap:
            return None
        body = bytearray() if growing is None else growing.data
        try:
            while True:
                async with asyncio.timeout(UPLOAD_STALL_SECONDS):  # inline: no task per chunk
                    chunk = await request.content.readany()
                if not chunk:
                    break
                if len(body) + len(chunk) > cap:
                    return None
                if growing is None:
                    body += chunk
                else:
                    growing.append(chunk)
        except TimeoutError as exc:
            raise _Aborted(f"nothing received for {UPLOAD_STALL_SECONDS:.0f}s") from exc
        except (ConnectionResetError, HttpProcessingError) as exc:
            raise _Aborted(str(exc) or type(exc).__name__) from exc
        return bytes(body)

    def _store_failed(self, path: str, kind: Kind, exc: OSError) -> web.Response:
        """Storing failed for want of a resource: the sender must know, to send it again."""
        label = "playlist" if kind.playlist else ("screenshot" if path == SCREENSHOT else "segment")
        self.origin.metrics.uploads.labels(kind=label, result="failed").inc()
        if exc.errno in EMFILE_ERRNOS:
            status, cause = (
                503,
                (
                    f"the origin is out of file descriptors (RLIMIT_NOFILE {fd_limit()}, "
                    f"{self.origin.public_connections()} public connections open)"
                ),
            )
        elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
            status, cause = 507, "the data volume is full"
        else:
            status, cause = 500, "storage error"
        self.origin.log_limited(
            f"store-failed:{exc.errno}",
            logging.ERROR,
            "upload of %s NOT stored: %s: %s; "
            "answered %d so the transcoder sends it again (it is lost if that fails too)",
            path,
            cause,
            exc.strerror or exc,
            status,
        )
        return web.json_response(
            {"error": f"upload not stored: {cause}: {exc.strerror or exc}"},
            status=status,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    # ------------------------------------------------------------------------- PUT
    async def put(self, request: web.Request) -> web.Response:
        path, refused = self._admit(request)
        if refused is not None:
            return refused
        kind = kind_of(path)
        assert kind is not None
        if kind.playlist or path in self.inflight:
            return await self._put(request, path, kind)
        done = self.inflight[path] = asyncio.Event()
        try:
            return await self._put(request, path, kind)
        finally:
            done.set()
            del self.inflight[path]

    async def _put(self, request: web.Request, path: str, kind: Kind) -> web.Response:
        cap = MAX_MANIFEST_BYTES if kind.playlist else self.origin.config.max_upload_bytes
        if (
            self.origin.dash_low_latency is not None
            and path.startswith("dash/")
            and kind.media
            and path not in self.origin.dash_live
        ):
            return await self._dash_segment(request, path, cap)
        try:
            body = await self._body(request, cap)
        except _Aborted as exc:
            self.origin.metrics.uploads.labels(kind="playlist" if kind.playlist else "segment", result="aborted").inc()
            self.origin.log_limited(
                "upload-aborted", logging.WARNING, "upload of %s aborted by the sender (%s): nothing stored", path, exc
            )
            return web.Response(status=400)
        if body is None:
            return self._refuse(
                request, _error(413, f"upload larger than the {cap} byte limit for this file type"), path
            )
        origin = self.origin
        origin.last_upload_at = time.time()
        origin.metrics.upload_bytes.inc(len(body))
        try:
            if path.endswith(".m3u8"):
                return await self._playlist(request, path, body)
            if path.endswith(".mpd"):
                text = body.decode("utf-8")
                check_mpd(text)
                await origin.run_io(origin.storage.write, path, body)
                origin.mpds[path] = (time_shift_buffer_depth(text), init_patterns(text))
                origin.manifests.add(path)
                origin.metrics.uploads.labels(kind="playlist", result="stored").inc()
                return web.Response(status=201)
            return await self._file(path, body)
        except (UnicodeDecodeError, PlaylistError, MpdError) as exc:
            return self._refuse(request, _error(400, f"unusable {path.rsplit('.', 1)[-1]} upload: {exc}"), path)
        except OSError as exc:
            return self._store_failed(path, kind, exc)

    async def _playlist(self, request: web.Request, path: str, body: bytes) -> web.Response:
        origin = self.origin
        text = body.decode("utf-8")
        if is_master(text):
            await origin.run_io(origin.storage.write, path, body)
            if path not in origin.manifests:
                log.info("master playlist %s received", path)
            origin.manifests.add(path)
            origin.metrics.uploads.labels(kind="playlist", result="stored").inc()
            return web.Response(status=201)
        playlist = parse_media_playlist(text)
        await self._wait_for_listed(path, playlist)
        if not origin.replicas.defer(path, playlist):
            origin.index_playlist(path, playlist)
        origin.metrics.uploads.labels(kind="playlist", result="indexed").inc()
        return web.Response(status=201)

    async def _wait_for_listed(self, path: str, playlist: MediaPlaylist) -> None:
        pending = []
        for seg in playlist.segments:
            for uri in (seg.uri, seg.map_uri):
                try:
                    event = self.inflight.get(resolve_uri(path, uri)) if uri else None
                except BadPath:
                    continue
                if event is not None:
                    pending.append(event.wait())
        if pending:
            try:
                await asyncio.wait_for(asyncio.gather(*pending), INFLIGHT_WAIT_SECONDS)
            except asyncio.TimeoutError:
                self.origin.log_limited(
                    f"slow:{path}",
                    logging.WARNING,
                    "%s lists segments still uploading after %.0fs; indexing them with a later playlist",
                    path,
                    INFLIGHT_WAIT_SECONDS,
                )

    async def _file(self, path: str, body: bytes) -> web.Response:
        origin = self.origin
        label = "screenshot" if path == SCREENSHOT else "segment"
        if path.startswith("hls/"):
            # While a peer's index is copied the one here is about to go: names as the peer gives them.
            stored = (
                path
                if origin.replicas.adopting is not None
                else origin.dvr.placement(path, lambda rel: origin.storage.same_bytes(rel, body))
            )
            if stored is None:
                origin.metrics.uploads.labels(kind=label, result="duplicate").inc()
                return web.Response(status=204)
            if stored != path:
                log.warning(
                    "%s overwritten while the DVR still serves it: new bytes stored as %s "
                    "(give every transcoder run its own file names)",
                    path,
                    stored,
                )
            await origin.run_io(origin.storage.write, stored, body)
            origin.dvr.uploaded(path, stored, time.monotonic())
            origin.replicas.received(path, stored)
            origin.hls_changed(path)
            log.debug("stored %s (%d bytes)%s", path, len(body), f" as {stored}" if stored != path else "")
        else:
            await origin.run_io(origin.storage.write, path, body)
            origin.note_upload_visibility(path)
            if path.startswith("dash/"):
                origin.dash_uploaded(path)
        origin.metrics.uploads.labels(kind=label, result="stored").inc()
        return web.Response(status=201)

    async def _dash_segment(self, request: web.Request, path: str, cap: int) -> web.Response:
        """A DASH segment, readable by viewers from its first chunk on (``chunked``)."""
        origin = self.origin
        growing = GrowingFile()
        origin.dash_live[path] = growing
        origin.note_upload_visibility(path)  # private or public as of when it began
        origin.hls_changed(path)  # requests held for this very segment take it now
        try:
            try:
                body = await self._body(request, cap, growing)
            except _Aborted as exc:
                growing.fail()
                origin.metrics.uploads.labels(kind="segment", result="aborted").inc()
                origin.log_limited(
                    "upload-aborted",
                    logging.WARNING,
                    "upload of %s aborted by the sender (%s): nothing stored, its viewers' responses cut short",
                    path,
                    exc,
                )
                return web.Response(status=400)
            if body is None:
                growing.fail()
                return self._refuse(
                    request, _error(413, f"upload larger than the {cap} byte limit for this file type"), path
                )
            origin.last_upload_at = time.time()
            origin.metrics.upload_bytes.inc(len(body))
            try:
                await origin.run_io(origin.storage.write, path, body)
            except OSError as exc:
                growing.fail()
                return self._store_failed(path, kind_of(path) or Kind("", ""), exc)
            origin.dash_uploaded(path)
            growing.finish()
            origin.metrics.uploads.labels(kind="segment", result="stored").inc()
            return web.Response(status=201)
        finally:
            if not growing.complete:
                growing.fail()  # cancelled (the sender went away): readers must not wait on it
            if origin.dash_live.get(path) is growing:
                del origin.dash_live[path]
            origin.hls_changed(path)

    # ------------------------------------------------------------------------- DELETE
    async def delete(self, request: web.Request) -> web.Response:
        path, refused = self._admit(request)
        if refused is not None:
            return refused
        origin = self.origin
        if path.startswith("hls/"):
            if origin.dvr.keeps(path):
                return web.Response(status=204)  # still inside the DVR window: the origin decides
            origin.dvr.forget(path)
        elif path.startswith("dash/") and origin.config.dvr_enabled and not path.endswith(".mpd"):
            return web.Response(status=204)  # DASH segments are kept for the DVR window by age
        origin.manifests.discard(path)
        origin.mpds.pop(path, None)
        origin.private_files.discard(path)
        await origin.run_io(origin.storage.delete, [path])
        return web.Response(status=204)
