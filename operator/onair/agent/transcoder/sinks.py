"""Where published files go: a local directory (shared volume, tests) or the origin over HTTP.

HTTP: ``PUT <output_url>/<relative path>`` and ``DELETE`` likewise, with
``Authorization: Bearer <token>``, over one keep-alive connection pool. A failed PUT is retried
a few times; after that the caller decides (a segment is skipped, a playlist is sent again with
the next segment anyway). On shutdown the agent gives the sink a deadline: the last segments
are worth a few seconds, not the pod's whole grace period when the origin is gone too.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import posixpath
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional, Protocol

import aiohttp

log = logging.getLogger("onair.transcoder.sinks")

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
}
RETRY_DELAYS = (0.2, 0.5, 1.0)
# An origin that answers 503 (out of file descriptors) or 507 (volume full) is alive and says the
# file was not stored: it gets these further tries, each after its Retry-After (capped), so a few
# seconds of trouble cost no segment. Errors without an answer keep the short schedule, so a dead
# origin does not hold the packager up longer than before.
BUSY_STATUSES = (503, 507)
BUSY_RETRY_DELAYS = (2.0, 2.0)
MAX_RETRY_AFTER = 2.0
# Concurrent LL-DASH segment streams: one per DASH representation (every encoded rung and the audio).
STREAM_CONNECTIONS = 16


class SinkError(Exception):
    pass


def content_type(path: str) -> str:
    return CONTENT_TYPES.get(posixpath.splitext(path)[1], "application/octet-stream")


class Sink(Protocol):
    async def put(self, path: str, data: bytes) -> None: ...
    async def put_file(self, path: str, local: Path, keep: bool) -> None:
        """Publish the finished file ``local`` as ``path``; without ``keep`` the local file is
        the sink's afterwards (gone once published). FileNotFoundError if ``local`` is missing."""

    async def put_stream(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        """Publish ``path`` while it is being written: each chunk goes out as it comes (LL-DASH).
        Sent once (a body already streamed cannot be sent again): SinkError and the caller falls
        back to ``put_file`` of the finished file."""

    async def delete(self, path: str) -> None: ...
    async def get(self, path: str) -> Optional[bytes]: ...
    async def close(self) -> None: ...
    def give_up_after(self, seconds: float) -> None: ...


class DirSink:
    """Writes atomically (temp file + rename): a reader never sees half a playlist."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._resolved = self.root.resolve()  # once: resolving costs a syscall per component
        self._same_fs: Optional[bool] = None  # can files be moved in by rename/link? learnt on first try
        self._dirs: set[Path] = set()  # directories known to exist: no mkdir per file

    def _path(self, path: str) -> Path:
        # Lexically, without resolve(): that costs a stat per path component on every file. The
        # names come from our own packager, and the root holds no symlinks we did not put there.
        parts = path.split("/")
        if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise SinkError(f"refusing to write outside {self.root}: {path}")
        return self._resolved.joinpath(*parts)

    def _parent_ready(self, target: Path) -> None:
        parent = target.parent
        if parent not in self._dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(parent)

    async def put(self, path: str, data: bytes) -> None:
        target = self._path(path)
        self._parent_ready(target)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_bytes(data)
        except FileNotFoundError:  # the directory went away since we made it (a DVR clear, say)
            self._dirs.discard(target.parent)
            self._parent_ready(target)
            tmp.write_bytes(data)
        os.replace(tmp, target)

    async def put_file(self, path: str, local: Path, keep: bool) -> None:
        """On the same filesystem a segment is moved (or, kept, hard-linked) into place: no copy
        of its bytes. Across filesystems (a volume mounted apart) it is copied."""
        if self._same_fs is not False:
            target = self._path(path)
            self._parent_ready(target)
            try:
                if keep:
                    tmp = target.with_name(f".{target.name}.tmp")
                    tmp.unlink(missing_ok=True)
                    os.link(local, tmp)
                    os.replace(tmp, target)
                    tmp.unlink(missing_ok=True)  # left when target already was this very file (rename's no-op)
                else:
                    os.replace(local, target)
                self._same_fs = True
                return
            except FileNotFoundError:
                if not local.exists():
                    raise
                self._dirs.discard(target.parent)  # gone since we made it: put() makes it again
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                self._same_fs = False
        await self.put(path, local.read_bytes())
        if not keep:
            local.unlink(missing_ok=True)

    async def put_stream(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        # A directory reader sees whole files only (atomic rename): nothing to gain from chunks.
        await self.put(path, b"".join([chunk async for chunk in chunks]))

    async def delete(self, path: str) -> None:
        try:
            self._path(path).unlink()
        except FileNotFoundError:
            pass

    async def get(self, path: str) -> Optional[bytes]:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None

    async def close(self) -> None:
        pass

    def give_up_after(self, seconds: float) -> None:
        pass  # local writes do not hang


def _retry_after(value: Optional[str]) -> float:
    """Seconds from a Retry-After header (delta-seconds only; the origin sends no dates), capped."""
    try:
        seconds = float(value) if value is not None else 0.0
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) if seconds == seconds else 0.0


async def _reason(resp: aiohttp.ClientResponse) -> str:
    """The origin's own words (its JSON ``error``), so the log says why a file was not stored."""
    try:
        body = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError, asyncio.TimeoutError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return f": {str(error)[:200]}" if error else ""


class HttpSink:
    def __init__(
        self,
        base_url: str,
        token: Callable[[], Optional[str]],
        timeout: float = 10.0,
        connect_timeout: Optional[float] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: Optional[aiohttp.ClientSession] = None
        # LL-DASH streams hold a connection for a whole segment each: a pool of their own, so they
        # never make LL-HLS parts and playlists wait for a free connection.
        self._stream_session: Optional[aiohttp.ClientSession] = None
        self._deadline: Optional[float] = None  # monotonic; no request runs past it

    def give_up_after(self, seconds: float) -> None:
        """From now on every request (retries included) ends within ``seconds``."""
        self._deadline = time.monotonic() + seconds

    def _remaining(self) -> Optional[float]:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One pool, connections kept alive between segments: no handshake per file.
            connector = aiohttp.TCPConnector(limit=8, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def _headers(self, path: str) -> dict[str, str]:
        headers = {"Content-Type": content_type(path)}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _request(self, method: str, path: str, data: Optional[bytes] = None, retries: bool = True) -> None:
        url = f"{self.base_url}/{path}"
        last = ""
        busy_after: Optional[float] = None  # the origin's Retry-After when it last answered busy
        for attempt, scheduled in enumerate((0.0,) + RETRY_DELAYS + BUSY_RETRY_DELAYS):
            if attempt and not retries:
                break
            if attempt > len(RETRY_DELAYS) and busy_after is None:
                break
            delay = scheduled if busy_after is None else max(scheduled, busy_after)
            remaining = self._remaining()
            if remaining is not None and remaining <= delay:
                last = f"{last}; not retried, the agent is stopping" if last else "not sent, the agent is stopping"
                break
            if delay:
                await asyncio.sleep(delay)
            timeout = (
                self._timeout
                if remaining is None
                else aiohttp.ClientTimeout(
                    total=min(self._timeout.total or remaining, remaining - delay),
                    sock_connect=self._timeout.sock_connect,
                )
            )
            busy_after = None
            try:
                async with self._client().request(
                    method, url, data=data, headers=self._headers(path), timeout=timeout
                ) as resp:
                    if resp.status < 300 or (method == "DELETE" and resp.status == 404):
                        return
                    last = f"HTTP {resp.status}{await _reason(resp)}"
                    if resp.status in (400, 401, 403, 413):
                        break  # retrying will not change the answer
                    if resp.status in BUSY_STATUSES:
                        busy_after = _retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
        raise SinkError(f"{method} {url}: {last}")

    async def put(self, path: str, data: bytes) -> None:
        await self._request("PUT", path, data)

    async def put_file(self, path: str, local: Path, keep: bool) -> None:
        await self.put(path, local.read_bytes())
        if not keep:
            local.unlink(missing_ok=True)

    async def put_stream(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        url = f"{self.base_url}/{path}"
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            raise SinkError(f"PUT {url}: not sent, the agent is stopping")
        # No total: the body lasts as long as the segment is being written. A stalled origin
        # still ends it (sock_read), and so does the agent stopping.
        timeout = aiohttp.ClientTimeout(
            total=remaining, sock_connect=self._timeout.total, sock_read=self._timeout.total
        )
        try:
            if self._stream_session is None or self._stream_session.closed:
                self._stream_session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=STREAM_CONNECTIONS, keepalive_timeout=60),
                    timeout=self._timeout,
                )
            async with self._stream_session.put(
                url, data=chunks, headers=self._headers(path), timeout=timeout, chunked=True
            ) as resp:
                if resp.status < 300:
                    return
                raise SinkError(f"PUT {url} (chunked): HTTP {resp.status}{await _reason(resp)}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise SinkError(f"PUT {url} (chunked): {type(exc).__name__}: {exc}") from None

    async def delete(self, path: str) -> None:
        await self._request("DELETE", path)

    async def get(self, path: str) -> Optional[bytes]:
        """The upload API is write-only; the origin's DVR copes with a restarted sequence."""
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._stream_session is not None:
            await self._stream_session.close()
            self._stream_session = None


# A replica that failed an upload is left out for at least this long, then probed in the background:
# a dead pod must not hold every upload up for its retries and timeouts.
REPLICA_PROBE_SECONDS = 1.0
REPLICA_CONNECT_TIMEOUT = 1.0
REPLICA_PROBE_TIMEOUT = 2.0


class FanoutSink:
    """Every file to every origin replica (``outputUrls``): all index the same uploads in the same
    order and so number segments alike (``origin/replicas.py``).

    Each replica is tried once per file, all at once; a replica that fails is left out until a
    background probe finds it answering, and is then asked to copy a peer's index
    (``POST .resync``), since it missed uploads. A file counts as published when one replica stored
    it; only when none did are the failed ones retried as a single origin would be, and then the
    caller hears of it (SinkError).
    """

    def __init__(self, base_urls: list[str], token: Callable[[], Optional[str]], timeout: float = 10.0) -> None:
        # A replica whose pod is gone leaves an address nothing answers at: connecting must give up
        # fast, every upload to the others waits for it.
        self.targets = [HttpSink(url, token, timeout, connect_timeout=REPLICA_CONNECT_TIMEOUT) for url in base_urls]
        self._down: set[int] = set()
        self._probes: dict[int, asyncio.Task] = {}
        self._token = token

    def give_up_after(self, seconds: float) -> None:
        for target in self.targets:
            target.give_up_after(seconds)

    def _live(self) -> list[int]:
        return [i for i in range(len(self.targets)) if i not in self._down]

    def _failed(self, i: int, error: BaseException) -> None:
        if i in self._down:
            return
        self._down.add(i)
        log.warning(
            "origin replica %s missed an upload (%s): left out until it answers again, then it copies a peer's DVR",
            self.targets[i].base_url,
            error,
        )
        self._probes[i] = asyncio.get_running_loop().create_task(self._probe(i), name=f"origin-replica-probe-{i}")

    async def _probe(self, i: int) -> None:
        target = self.targets[i]
        timeout = aiohttp.ClientTimeout(total=REPLICA_PROBE_TIMEOUT)
        try:
            while True:
                await asyncio.sleep(REPLICA_PROBE_SECONDS)
                try:
                    async with target._client().get(f"{target.base_url}/.alive", timeout=timeout) as resp:
                        if resp.status != 204:
                            continue
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    continue
                # Back in the fan-out first: what comes during its copy is not missed again.
                self._down.discard(i)
                try:
                    async with target._client().post(
                        f"{target.base_url}/.resync",
                        headers=target._headers(".resync"),
                        timeout=aiohttp.ClientTimeout(total=120),
                    ) as resp:
                        if resp.status == 200:
                            log.info("origin replica %s is back and copied a peer's DVR", target.base_url)
                            return
                        reason = f"HTTP {resp.status}{await _reason(resp)}"
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                log.warning("origin replica %s could not copy a peer's DVR: %s; trying again", target.base_url, reason)
                self._down.add(i)
        finally:
            self._probes.pop(i, None)

    async def _all(self, call: Callable[[HttpSink, bool], Any]) -> None:
        live = self._live()
        results = await asyncio.gather(*(call(self.targets[i], False) for i in live), return_exceptions=True)
        failed = []
        for i, result in zip(live, results):
            if isinstance(result, SinkError):
                failed.append((i, result))
            elif isinstance(result, BaseException):
                raise result
        if len(failed) < len(live):
            for i, error in failed:
                self._failed(i, error)
            return
        # Nobody stored it: the usual retries, on each, before the caller hears of it.
        results = await asyncio.gather(*(call(self.targets[i], True) for i in live), return_exceptions=True)
        errors = []
        for i, result in zip(live, results):
            if isinstance(result, SinkError):
                errors.append(str(result))
                self._failed(i, result)
            elif isinstance(result, BaseException):
                raise result
        if len(errors) == len(live):
            raise SinkError("; ".join(errors) or "no origin replica is answering")

    async def put(self, path: str, data: bytes) -> None:
        await self._all(lambda target, retries: target._request("PUT", path, data, retries))

    async def put_file(self, path: str, local: Path, keep: bool) -> None:
        await self.put(path, local.read_bytes())
        if not keep:
            local.unlink(missing_ok=True)

    async def put_stream(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        """Each chunk to every live replica as it comes; a replica that fails is left out (and
        catches up later), the others go on."""
        live = self._live()
        queues: list[asyncio.Queue] = [asyncio.Queue() for _ in live]

        async def feed() -> None:
            try:
                async for chunk in chunks:
                    for queue in queues:
                        queue.put_nowait(chunk)
            finally:
                for queue in queues:
                    queue.put_nowait(None)

        async def drain(queue: asyncio.Queue) -> AsyncIterator[bytes]:
            while (chunk := await queue.get()) is not None:
                yield chunk

        feeder = asyncio.get_running_loop().create_task(feed())
        results = await asyncio.gather(
            *(self.targets[i].put_stream(path, drain(q)) for i, q in zip(live, queues)), return_exceptions=True
        )
        await feeder
        errors = []
        for i, result in zip(live, results):
            if isinstance(result, SinkError):
                errors.append(str(result))
                if len(errors) < len(live):
                    self._failed(i, result)
            elif isinstance(result, BaseException):
                raise result
        if errors and len(errors) == len(live):
            raise SinkError("; ".join(errors))

    async def delete(self, path: str) -> None:
        await self._all(lambda target, retries: target._request("DELETE", path, None, retries))

    async def get(self, path: str) -> Optional[bytes]:
        return None

    async def close(self) -> None:
        for task in list(self._probes.values()):
            task.cancel()
        for target in self.targets:
            await target.close()
