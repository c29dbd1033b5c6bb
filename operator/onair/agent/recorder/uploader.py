"""The recorder's upload loop: finds finished files on the volume and uploads them one at a time.

What is uploaded, when, and what counts as confirmed is described in ``onair.agent.recorder.upload``.
This module owns the order and the retries. The volume is the queue: every pass lists it, so a
restarted recorder finds exactly what its predecessor left (parts without a marker, sidecars
whose marker is older than their content) and nothing needs to be remembered elsewhere.

Order: parts oldest first, then sidecars whose parts are all in the bucket. A failure that is the
store's (credentials, bucket, unreachable) holds every upload back for the backoff delay; one that
is the file's (rejected, unreadable) holds back that file only, so it cannot block the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import struct
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry, Counter, Gauge

from onair.api.agent import Recording, RecorderConfig, StoredObject, UploadStatus

from .naming import PartFile, list_parts, livestream_slug, sidecar_name
from .duration import probe_duration
from .session import Backoff
from .sidecar import write_sidecar
from .vod import NotFragmentedMp4, hls_vod_playlist, index_fragmented_mp4, playlist_name
from .upload import (
    STORE_WIDE_KINDS,
    Marker,
    MultipartProgress,
    S3Store,
    UploadCancelled,
    UploadFailed,
    classify,
    error_code,
    file_md5,
    livestream_key_prefix,
    marker_name,
    now_utc,
    object_key,
    object_url,
    read_marker,
    target_url,
    write_marker,
)

log = logging.getLogger("onair.agent.recorder")

# How often the volume is looked at while nothing wakes the loop (a part closed by a split is noticed
# by this; the end of an ffmpeg run wakes it at once).
POLL_SECONDS = 1.0
FIRST_RETRY_SECONDS = 1.0
# On SIGTERM, after the session is finalized: the time left to upload its last part and sidecar
# within the pod's grace period. What is left is uploaded by the next recorder on the volume.
SHUTDOWN_DRAIN_SECONDS = 30.0


@dataclass(frozen=True)
class Pending:
    name: str
    session: str
    sidecar: bool


def run_in_daemon_thread(function: Callable[[], Any]) -> "asyncio.Future[Any]":
    """Like ``asyncio.to_thread``, but the thread never holds up the interpreter's exit: an upload
    cut off by shutdown is resumed by the next recorder."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any, error: Optional[BaseException]) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)

    def work() -> None:
        try:
            outcome, error = function(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, outcome, error)
        except RuntimeError:
            pass  # the loop is gone: nobody waits any more

    threading.Thread(target=work, name="recorder-upload", daemon=True).start()
    return future


class _Either:
    """Set when either event is: the agent stopping, or the running upload's session being deleted."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)


class Uploader:
    def __init__(
        self, config: RecorderConfig, open_run: Callable[[], Optional[tuple[str, int]]], registry: CollectorRegistry
    ) -> None:
        assert config.s3 is not None
        self.s3 = config.s3
        self.livestream = config.livestream
        self.output_dir = Path(config.output_dir)
        self.store = S3Store(self.s3)
        # Its own client: deletions run in another thread than the uploads.
        self.deletion_store = S3Store(self.s3)
        self._held: set[str] = set()
        # Cuts off the running upload (between two multipart parts) when its session is being deleted.
        self._cancel_current = threading.Event()
        self._uploading_session: Optional[str] = None
        self._open_run = open_run
        self._wake = asyncio.Event()
        self._cancel = threading.Event()
        self._task: Optional[asyncio.Task] = None
        self._drain_until: Optional[float] = None
        self._backoff = Backoff(FIRST_RETRY_SECONDS, max(FIRST_RETRY_SECONDS, self.s3.retry_max_seconds))
        self._not_before = 0.0
        self._file_backoff: dict[str, Backoff] = {}
        self._file_not_before: dict[str, float] = {}
        self._failures: dict[str, UploadFailed] = {}
        self._last: Optional[UploadFailed] = None
        self._failing_since: Optional[datetime] = None
        self._next_attempt_at: Optional[datetime] = None
        self._progress: dict[str, MultipartProgress] = {}
        self._checked: set[str] = set()
        self._swept = False
        self._markers: dict[str, Marker] = {}
        self._durations: dict[str, Optional[float]] = {}
        self._sidecar_md5: dict[str, tuple[tuple[int, int], str]] = {}
        self._logged_error: Optional[str] = None
        self._sidecar_pattern = re.compile(rf"^{re.escape(livestream_slug(config.livestream))}_\d{{8}}T\d{{6}}Z\.json$")
        self.pending: list[Pending] = []
        self.uploading: Optional[str] = None
        self._init_metrics(registry)

    def _init_metrics(self, registry: CollectorRegistry) -> None:
        labels = ["livestream"]
        Gauge(
            "onair_recorder_upload_pending",
            "finished files on the volume not yet confirmed in object storage",
            labels,
            registry=registry,
        ).labels(self.livestream).set_function(lambda: float(len(self.pending)))
        Gauge(
            "onair_recorder_upload_failing", "1 while the last upload attempt failed", labels, registry=registry
        ).labels(self.livestream).set_function(lambda: 1.0 if self._last else 0.0)
        self.m_attempts = Counter(
            "onair_recorder_upload_attempts",
            "upload attempts, by outcome (uploaded, or the kind of failure)",
            ["livestream", "outcome"],
            registry=registry,
        )
        self.m_bytes = Counter("onair_recorder_uploaded_bytes", "bytes of confirmed uploads", labels, registry=registry)

    # contract ---------------------------------------------------------------------------
    def status(self) -> UploadStatus:
        last = self._last
        return UploadStatus(
            target=target_url(self.s3.bucket, self.s3.prefix),
            endpoint=self.s3.endpoint,
            pending=len(self.pending),
            uploading=self.uploading,
            error=last.message if last else None,
            error_kind=last.kind if last else None,
            failing_since=self._failing_since if last else None,
            next_attempt_at=self._next_attempt_at if last else None,
        )

    def with_uploads(self, recording: Recording) -> Recording:
        """The recording as the sidecar lists it, plus each part's object or upload error as known now."""
        parts = []
        for part in recording.parts:
            stored = part.object or self.object_of(part.file)
            parts.append(
                part.model_copy(
                    update={"object": stored, "upload_error": None if stored else self.upload_error_of(part.file)}
                )
            )
        return recording.model_copy(update={"parts": parts})

    def object_of(self, file: str) -> Optional[StoredObject]:
        marker = self._marker(file)
        return marker.object if marker else None

    def upload_error_of(self, file: str) -> Optional[str]:
        own = self._failures.get(file)
        if own is not None:
            return own.message
        # A store-wide failure is why every waiting file waits.
        if self._last is not None and self._last.kind in STORE_WIDE_KINDS and any(p.name == file for p in self.pending):
            return self._last.message
        return None

    @contextlib.asynccontextmanager
    async def holding(self, session: str) -> AsyncIterator[None]:
        """No upload of ``session`` starts meanwhile, and the one running (if any) has ended."""
        self._held.add(session)
        try:
            if self._uploading_session == session:
                # Uploading what is about to be deleted is wasted time (a part can take minutes):
                # cut it off; the multipart upload it leaves is aborted with the session's objects.
                self._cancel_current.set()
            while self._uploading_session == session:
                await asyncio.sleep(0.1)
            yield
        finally:
            self._held.discard(session)
            for name in [n for n in self._markers if n.startswith(f"{session}_part") or n == sidecar_name(session)]:
                del self._markers[name]
            self._wake.set()

    # lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="recorder-upload")

    def wake(self) -> None:
        self._wake.set()

    async def close(self, drain_seconds: float = SHUTDOWN_DRAIN_SECONDS) -> None:
        """Upload what is left for up to ``drain_seconds`` (the finalized session's last part and
        sidecar), then stop; an upload still running is cut off between two parts."""
        if self._task is None:
            return
        self._drain_until = time.monotonic() + drain_seconds
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), drain_seconds)
        except asyncio.TimeoutError:
            self._cancel.set()
            try:
                await asyncio.wait_for(self._task, self.s3.request_timeout_seconds + 5)
            except asyncio.TimeoutError:
                self._task.cancel()
        self._scan()
        if self.pending:
            log.warning(
                "%d file(s) of %s not uploaded yet (%s): the next recorder on this volume uploads them",
                len(self.pending),
                self.livestream,
                ", ".join(p.name for p in self.pending[:5]),
            )

    # the loop ---------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                self._scan()
                if self._drain_until is not None and (not self.pending or time.monotonic() >= self._drain_until):
                    return
                item, wait = self._next()
                if item is None:
                    await self._sleep(wait)
                    continue
                await self._attempt(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end uploads for good
                log.exception("upload step failed; retrying")
                await self._sleep(5.0)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), max(0.05, seconds))
        except asyncio.TimeoutError:
            pass

    def _next(self) -> tuple[Optional[Pending], float]:
        now = time.monotonic()
        if not self.pending:
            return None, POLL_SECONDS
        if now < self._not_before:
            # Waits are cut into passes: files finished meanwhile are counted in /status at once.
            return None, min(POLL_SECONDS, self._not_before - now)
        waits = []
        for item in self.pending:
            if item.session in self._held:
                waits.append(POLL_SECONDS)
                continue
            not_before = self._file_not_before.get(item.name, 0.0)
            if not_before <= now:
                return item, 0.0
            waits.append(not_before - now)
        return None, min([POLL_SECONDS, *waits])

    # the volume -------------------------------------------------------------------------
    def _marker(self, file: str) -> Optional[Marker]:
        marker = self._markers.get(file)
        if marker is None:
            marker = read_marker(self.output_dir, file)
            if marker is not None:
                self._markers[file] = marker
        return marker

    def _scan(self) -> None:
        """What is waiting for upload now; deletes parts whose upload a killed predecessor confirmed."""
        disk = list_parts(self.output_dir, self.livestream)
        open_part = self._part_being_written(disk)
        pending: list[Pending] = []
        for part in disk:
            if part.name == open_part:
                continue
            marker = self._marker(part.name)
            if marker is None:
                pending.append(Pending(part.name, part.prefix, False))
                continue
            if not self.s3.keep_local_copy:
                self._delete_uploaded(part.name, marker)
        for session in self._sidecars():
            if not self._sidecar_uploaded(session):
                pending.append(Pending(sidecar_name(session), session, True))
        self.pending = pending

    def _part_being_written(self, disk: list[PartFile]) -> Optional[str]:
        """The highest part of the running ffmpeg's session at or after its first number: the
        segment muxer closes a part before it opens the next, so every other one is finished."""
        run = self._open_run()
        if run is None:
            return None
        prefix, start = run
        candidates = [p for p in disk if p.prefix == prefix and p.number >= start]
        return max(candidates).name if candidates else None

    def _sidecars(self) -> list[str]:
        try:
            names = [e.name for e in os.scandir(self.output_dir)]
        except OSError:
            return []
        return sorted(n[: -len(".json")] for n in names if self._sidecar_pattern.match(n))

    def _sidecar_uploaded(self, session: str) -> bool:
        marker = self._marker(sidecar_name(session))
        return marker is not None and marker.md5 == self._current_md5(sidecar_name(session))

    def _current_md5(self, name: str) -> Optional[str]:
        path = self.output_dir / name
        try:
            st = path.stat()
            stamp = (st.st_size, st.st_mtime_ns)
            cached = self._sidecar_md5.get(name)
            if cached and cached[0] == stamp:
                return cached[1]
            digest = file_md5(path)
        except OSError:
            return None
        self._sidecar_md5[name] = (stamp, digest)
        return digest

    def _sidecar_ready(self, name: str) -> bool:
        """Every part the sidecar lists is in the bucket (or gone from the volume altogether)."""
        try:
            document = json.loads((self.output_dir / name).read_text())
        except (OSError, ValueError):
            return False
        for part in document.get("parts") or ():
            file = str(part.get("file") or "")
            if self._marker(file) is None and (self.output_dir / file).exists():
                return False
        return True

    def _complete_sidecar(self, name: str, session: str) -> None:
        """Name each part's object in the sidecar before it is uploaded: the copy in the bucket then
        says where every part is, without the volume."""
        document = json.loads((self.output_dir / name).read_text())
        changed = False
        for part in document.get("parts") or ():
            marker = self._marker(str(part.get("file") or ""))
            if marker is None:
                continue
            wire = marker.object.wire()
            if part.get("object") != wire:
                part["object"] = wire
                changed = True
        if changed:
            write_sidecar(self.output_dir, session, document)

    def _delete_uploaded(self, file: str, marker: Marker) -> None:
        path = self.output_dir / file
        try:
            size = path.stat().st_size
        except OSError:
            return
        if size != marker.bytes:
            # Never delete what the bucket does not hold: a file that differs is uploaded again.
            log.warning(
                "%s is %d bytes on the volume but %d in the bucket: uploading it again", file, size, marker.bytes
            )
            self._markers.pop(file, None)
            try:
                (self.output_dir / marker_name(file)).unlink()
            except OSError:
                pass
            return
        try:
            path.unlink()
        except OSError as exc:
            log.warning("cannot remove %s after its upload: %s", file, exc.strerror)
        else:
            log.info("removed %s from the volume: %s holds it", file, marker.object.url)

    # one attempt ------------------------------------------------------------------------
    async def _attempt(self, item: Pending) -> None:
        path = self.output_dir / item.name
        key = object_key(self.s3.prefix, self.livestream, item.session, item.name)
        if item.sidecar:
            if not self._sidecar_ready(item.name):
                # Its parts go first; look again after the next pass.
                self._file_not_before[item.name] = time.monotonic() + POLL_SECONDS
                return
            try:
                self._complete_sidecar(item.name, item.session)
            except (OSError, ValueError) as exc:
                self._failed(item.name, UploadFailed("local", f"cannot update sidecar {item.name}: {exc}"))
                return
            duration = None
        else:
            if item.name not in self._durations:
                self._durations[item.name] = await probe_duration(path)
            duration = self._durations[item.name]
        if item.session in self._held:
            return  # being deleted (checked after the probe's await, in the same step as the flag below)
        self.uploading, self._uploading_session = item.name, item.session
        self._cancel_current.clear()
        started = time.monotonic()
        try:
            etag, size, md5 = await run_in_daemon_thread(lambda: self._upload_blocking(path, key, item.name))
            playlist = None if item.sidecar else await run_in_daemon_thread(lambda: self._upload_playlist(path, key))
        except UploadCancelled:
            return
        except Exception as exc:  # noqa: BLE001 - every failure is reported and retried
            self._failed(item.name, classify(exc, self.s3))
            return
        finally:
            self.uploading, self._uploading_session = None, None
        stored = StoredObject(
            url=object_url(self.s3.bucket, key),
            endpoint=self.s3.endpoint,
            etag=etag,
            uploaded_at=now_utc(),
            playlist=playlist,
        )
        marker = Marker(file=item.name, bytes=size, md5=md5, object=stored, duration_seconds=duration)
        try:
            write_marker(self.output_dir, marker)
        except OSError as exc:
            self._failed(
                item.name,
                UploadFailed(
                    "local",
                    (
                        f"uploaded, but cannot record it on the volume ({exc.strerror}); the file stays and is uploaded again"
                    ),
                ),
            )
            return
        self._markers[item.name] = marker
        self._succeeded(item.name, size)
        log.info(
            "uploaded %s to %s (%d bytes, ETag %s) in %.1fs",
            item.name,
            stored.url,
            size,
            etag,
            time.monotonic() - started,
        )
        if not item.sidecar and not self.s3.keep_local_copy:
            self._delete_uploaded(item.name, marker)

    def _upload_blocking(self, path: Path, key: str, name: str) -> tuple[str, int, str]:
        if not self._swept:
            try:
                aborted = self.store.abort_stale_uploads(livestream_key_prefix(self.s3.prefix, self.livestream))
            except ClientError as exc:
                if error_code(exc)[0] != "AccessDenied":
                    raise
                # The key may write but not list uploads: the upload itself still works, and the
                # bucket's lifecycle rule (AbortIncompleteMultipartUpload) is left to clean up.
                log.warning(
                    "cannot list the multipart uploads a previous recorder may have left (AccessDenied): "
                    "grant s3:ListBucketMultipartUploads and s3:AbortMultipartUpload, or let a lifecycle "
                    "rule abort incomplete uploads"
                )
                aborted = 0
            if aborted:
                log.warning(
                    "aborted %d multipart upload(s) a previous recorder left unfinished; their files are "
                    "uploaded again",
                    aborted,
                )
            self._swept = True
        if name not in self._checked:
            found = self.store.already_there(path, key)
            self._checked.add(name)
            if found is not None:
                log.info("%s is already in the bucket (uploaded before the last restart)", name)
                return found

        def remember(progress: Optional[MultipartProgress]) -> None:
            if progress is None:
                self._progress.pop(name, None)
            else:
                self._progress[name] = progress

        return self.store.upload(
            path, key, self._progress.get(name), _Either(self._cancel, self._cancel_current), remember
        )

    def _upload_playlist(self, path: Path, key: str) -> Optional[str]:
        """Upload the part's HLS VOD playlist next to it (before the part may leave the volume: it is
        read from the file); its URL, or None for a part that is no fragmented MP4 (then it is still
        a recording, only without a playlist). A failed upload fails the attempt, which is retried."""
        try:
            with open(path, "rb") as handle:
                index = index_fragmented_mp4(handle, os.fstat(handle.fileno()).st_size)
        except (NotFragmentedMp4, OSError, struct.error) as exc:
            log.warning("no VOD playlist for %s: %s", path.name, exc)
            return None
        playlist_key = f"{key.rsplit('/', 1)[0]}/{playlist_name(path.name)}"
        self.store.put_small(playlist_key, hls_vod_playlist(index, path.name).encode())
        return object_url(self.s3.bucket, playlist_key)

    def _failed(self, name: str, failure: UploadFailed) -> None:
        now = time.monotonic()
        if failure.kind in STORE_WIDE_KINDS:
            delay = self._backoff.next()
            self._not_before = now + delay
        else:
            backoff = self._file_backoff.setdefault(
                name, Backoff(FIRST_RETRY_SECONDS, max(FIRST_RETRY_SECONDS, self.s3.retry_max_seconds))
            )
            delay = backoff.next()
            self._file_not_before[name] = now + delay
        self._failures[name] = failure
        self._last = failure
        if self._failing_since is None:
            self._failing_since = now_utc()
        self._next_attempt_at = now_utc() + timedelta(seconds=delay)
        self.m_attempts.labels(self.livestream, failure.kind).inc()
        if failure.message != self._logged_error:
            log.error("upload of %s failed: %s (retrying in %.0fs)", name, failure.message, delay)
            self._logged_error = failure.message
        else:
            log.info("upload of %s failed again: %s (retrying in %.0fs)", name, failure.kind, delay)

    def _succeeded(self, name: str, size: int) -> None:
        self.m_attempts.labels(self.livestream, "uploaded").inc()
        self.m_bytes.labels(self.livestream).inc(size)
        self._failures.pop(name, None)
        self._file_backoff.pop(name, None)
        self._file_not_before.pop(name, None)
        # The store answered: whatever kept it from doing so is over.
        for other in [n for n, f in self._failures.items() if f.kind in STORE_WIDE_KINDS]:
            del self._failures[other]
        self._backoff.reset()
        self._not_before = 0.0
        if self._last is not None and not self._failures:
            log.info("uploads to %s work again", target_url(self.s3.bucket, self.s3.prefix))
            self._logged_error = None
        self._last = next(reversed(self._failures.values()), None) if self._failures else None
        if self._last is None:
            self._failing_since = None
            self._next_attempt_at = None
