"""The recorder's API over finished recordings on its volume: ``GET /vod/<file>`` for the origin,
which serves them to viewers, and ``DELETE /recordings/<session>`` for the operator."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable, Optional

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from . import vod
from .deletion import NotASessionOf, ObjectDeletionFailed, delete_session, delete_session_objects
from .sidecar import FinishedSessions
from .uploader import Uploader

log = logging.getLogger("onair.agent.recorder")


class FinishedRecordingsApi:
    def __init__(
        self,
        output_dir: Path,
        livestream: str,
        finished: FinishedSessions,
        uploader: Optional[Uploader],
        not_finished: Callable[[str], bool],
        registry: CollectorRegistry,
    ) -> None:
        self.output_dir = output_dir
        self.livestream = livestream
        self.finished = finished
        self.uploader = uploader
        # A session being recorded or finalized: neither served nor deleted.
        self.not_finished = not_finished
        self.m_deleted = Counter(
            "onair_recorder_sessions_deleted",
            "finished sessions deleted through the API",
            ["livestream"],
            registry=registry,
        )
        self._vod_playlists: dict[str, tuple[tuple[int, int], str]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.add_routes([web.delete("/recordings/{session}", self.delete_recording), web.get("/vod/{file}", self.vod)])

    def finished_part(self, file: str) -> Optional[Path]:
        """The part file ``file`` when a finished session lists it and it is still on the volume: never
        the part ffmpeg is writing, nothing but parts (no sidecar, marker or other file)."""
        if any(file == part.file for recording in self.finished.list() for part in recording.parts):
            path = self.output_dir / file
            return path if path.is_file() else None
        return None

    async def vod(self, request: web.Request) -> web.StreamResponse:
        """``GET /vod/<part>.m3u8`` (its HLS VOD playlist, built from the part's boxes) and
        ``GET /vod/<part>.mp4`` (the part, byte ranges answered): the recordings on the volume,
        read-only, for the origin, which serves them to viewers under the Livestream's access rules."""
        name = request.match_info["file"]
        part = vod.part_of_playlist(name) if name.endswith(".m3u8") else name
        path = self.finished_part(part) if part and part.endswith(".mp4") else None
        if part is None or path is None:
            return web.json_response({"error": f"no finished recording part {name!r} on this volume"}, status=404)
        if name.endswith(".mp4"):
            return web.FileResponse(path, headers={"Content-Type": "video/mp4", "Cache-Control": "max-age=86400"})
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = self._vod_playlists.get(part)
        if cached is None or cached[0] != stamp:

            def build() -> str:
                with open(path, "rb") as handle:
                    return vod.hls_vod_playlist(vod.index_fragmented_mp4(handle, stat.st_size), part)

            try:
                cached = (stamp, await asyncio.to_thread(build))
            except vod.NotFragmentedMp4 as exc:
                return web.json_response({"error": f"{part} has no VOD playlist: {exc}"}, status=404)
            self._vod_playlists[part] = cached
        return web.Response(
            text=cached[1], content_type="application/vnd.apple.mpegurl", headers={"Cache-Control": "max-age=60"}
        )

    async def delete_recording(self, request: web.Request) -> web.Response:
        """``DELETE /recordings/<session>``: the finished session's parts and sidecar (the operator,
        when its Recording object is deleted). Idempotent: a session already gone deletes nothing."""
        session = request.match_info["session"]
        if self.not_finished(session):
            return web.json_response(
                {
                    "error": f"recording {session} is not finished: it is being recorded or "
                    "finalized; stop the recording first"
                },
                status=409,
            )
        loop = asyncio.get_running_loop()
        objects: list[str] = []
        try:
            if self.uploader is not None:
                # No upload of this session may run meanwhile: it would put back an object just deleted.
                async with self.uploader.holding(session):
                    objects = await loop.run_in_executor(
                        None,
                        delete_session_objects,
                        self.uploader.deletion_store,
                        self.output_dir,
                        self.livestream,
                        session,
                    )
                    deleted = await loop.run_in_executor(
                        None, delete_session, self.output_dir, self.livestream, session
                    )
            else:
                deleted = await loop.run_in_executor(None, delete_session, self.output_dir, self.livestream, session)
        except NotASessionOf as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except ObjectDeletionFailed as exc:
            log.error("deleting the objects of recording %s: %s", session, exc)
            return web.json_response(
                {"error": f"cannot delete the uploaded objects of recording {session}: {exc}"}, status=502
            )
        except OSError as exc:
            log.error("deleting recording %s: %s", session, exc.strerror or exc)
            return web.json_response({"error": f"cannot delete recording {session}: {exc.strerror or exc}"}, status=500)
        log.info("deleted recording %s: %s", session, ", ".join([*objects, *deleted]) or "no file was left")
        self.m_deleted.labels(self.livestream).inc()
        return web.json_response({"session": session, "deleted": deleted, "objects": objects})
