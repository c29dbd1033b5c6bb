"""Several origin replicas behind one Service, serving the same playlists and parts.

Viewers are balanced across replicas from one request to the next, so every replica must answer
the same request with the same playlist: the same media sequence and discontinuity numbers, the
same segments public, the same parts. The origin numbers segments itself (``dvr.py``), in the
order it indexes them, so replicas stay identical by construction when they index the same
uploads in the same order:

* the transcoder PUTs and DELETEs every file to every replica (``transcoder/sinks.FanoutSink``),
  a segment before the playlist that lists it, as with one origin; indexing is deterministic
  given the uploads (no clock in the numbering);
* a replica that starts (first start, restart, rolling update) or that missed uploads (the sink
  asks it to, ``POST /upload/.resync``) copies a Ready peer's index before it serves, with the
  files the transcoder sends once (master playlists) or outside the index (MPDs, DASH segments)
  (``catch_up``): the peer's ``Dvr.replica_state`` (the journal's snapshot, uploads not indexed
  yet, the LL-HLS parts, public or not) and every file it references that this replica lacks.
  The fan-out keeps coming meanwhile: files are stored, playlists wait (``deferred``) until
  the copy is in place, then are indexed in the order they arrived. So its numbering continues
  the peer's instead of starting again, and nothing uploaded during the copy is lost. A starting
  replica copies twice (``settle``): the second time once the transcoder's uploads have reached
  it for a few seconds, so nothing the peer indexed from uploads made before this replica was
  back in the fan-out is missing when it starts serving.

What the fan-out cannot see is caught by comparison (``watch``): every few seconds each replica
compares its last segments with each peer's (``GET /upload/.recent``); the one whose numbers are
smaller for the same segment (it missed an upload, or the operator made it public a few
milliseconds after the others and a segment began in between, so the segment is private here and
public there) copies that peer. Both sides see the same difference and only one acts, so they
converge, within a few seconds, on one numbering.

Why not one replica indexing and the others following it: the transcoder would have to find the
leader, and a crashed leader would stop the live edge until another took over. Here any replica
alone keeps the stream going. A replica that finds no peer ready (the first one, or all restarted
at once) keeps its own journal, as a single origin does.

The peer protocol is on the upload port, with the upload token (replicas and the transcoder
share it): ``GET /upload/.replica`` (the state, with the size of each file) and ``GET
/upload/<stored path>`` (a file).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from urllib.parse import urlsplit
from typing import Any, Callable, Optional, Protocol

import aiohttp

from onair.agent.hls import MediaPlaylist
from onair.api.agent import OriginConfig

from onair.agent.app import SecretFile
from .dash import init_patterns, time_shift_buffer_depth
from .dvr import Dvr, behind
from .journal import Journal
from .storage import Storage

log = logging.getLogger("onair.agent.origin")

ALIVE_PATH = ".alive"
STATE_PATH = ".replica"
RECENT_PATH = ".recent"
RESYNC_PATH = ".resync"
# Files copied from a peer at once: enough to fill a link, not so many that the peer's viewers wait.
COPY_CONCURRENCY = 8
PEER_TIMEOUT_SECONDS = 10.0
# How often replicas compare their last segments (``watch``): a drift is repaired within this.
COMPARE_SECONDS = 3.0
# A replica that copied a peer on start copies it again once uploads have reached it this long
# (``settle``), and does not wait longer than the maximum for them (a stream not broadcasting).
SETTLE_SECONDS = 3.0
SETTLE_MAX_SECONDS = 15.0


class CatchUpFailed(Exception):
    pass


class Host(Protocol):
    """What of the origin agent a replica's catch-up uses (the agent passes itself)."""

    config: OriginConfig
    dvr: Dvr
    storage: Storage
    journal: Journal
    upload_token: SecretFile
    manifests: set[str]
    mpds: dict[str, tuple[Optional[float], list[re.Pattern]]]
    dash_uploaded_at: dict[str, float]
    private_files: set[str]

    def dash_uploaded(self, path: str) -> None: ...

    async def run_io(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def index_playlist(self, path: str, playlist: MediaPlaylist) -> None: ...
    def update_dvr_metrics(self, path: Optional[str] = None) -> None: ...
    def hls_changed(self, path: Optional[str] = None) -> None: ...


class Replicas:
    def __init__(self, origin: Host, peer_urls: list[str]) -> None:
        self.origin = origin
        # The operator renders one list for every replica (one ConfigMap): each leaves itself out.
        # A pod's HOSTNAME is its name (a StatefulSet pod's is its peers-Service host's first label).
        me = (os.environ.get("HOSTNAME") or socket.gethostname()).split(".", 1)[0]
        self.peer_urls = [u.rstrip("/") for u in peer_urls if (urlsplit(u).hostname or "").split(".", 1)[0] != me]
        # Not None while a peer's index is being copied: the uploads received meanwhile.
        self.adopting: Optional[list[tuple[str, str]]] = None
        self.deferred: dict[str, MediaPlaylist] = {}  # playlists received meanwhile, in arrival order
        self.first_upload_at: Optional[float] = None  # monotonic: when the transcoder's uploads began here
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.peer_urls)

    def received(self, path: str, stored: str) -> None:
        if self.first_upload_at is None:
            self.first_upload_at = time.monotonic()
        if self.adopting is not None:
            self.adopting.append((path, stored))

    def defer(self, path: str, playlist: MediaPlaylist) -> bool:
        """True when the playlist must wait for the copy to be in place."""
        if self.adopting is None:
            return False
        self.deferred.pop(path, None)
        self.deferred[path] = playlist
        return True

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.origin.upload_token.get() or ''}"}

    async def catch_up(self, prefer: Optional[str] = None) -> Optional[str]:
        """Copy the first answering peer's index; the peer copied from, None if none answered.

        No peer answering is no reason to wait: this replica is the first, or the others are down
        or copying too (all restarted at once), and then each goes on with its own journal.
        """
        if not self.enabled:
            return None
        async with self._lock:
            self.adopting, self.deferred = [], {}
            try:
                reasons = []
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_SECONDS)) as http:
                    for peer in sorted(self.peer_urls, key=lambda u: u != prefer):
                        try:
                            await self._copy_from(http, peer)
                            return peer
                        except (CatchUpFailed, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                            reasons.append(f"{peer}: {exc or type(exc).__name__}")
                log.info(
                    "no peer replica to copy the DVR from (%s): this replica goes on with its own", "; ".join(reasons)
                )
                return None
            finally:
                self._index_deferred()

    async def _copy_from(self, http: aiohttp.ClientSession, peer: str) -> None:
        origin = self.origin
        async with http.get(f"{peer}/{STATE_PATH}", headers=self._headers()) as resp:
            if resp.status != 200:
                raise CatchUpFailed(f"HTTP {resp.status} {(await resp.text())[:200]}")
            state = await resp.json()
        sizes: dict[str, int] = state.get("sizes", {})
        missing = await origin.run_io(self._missing, sizes)
        semaphore = asyncio.Semaphore(COPY_CONCURRENCY)

        async def copy(stored: str) -> None:
            async with semaphore:
                async with http.get(f"{peer}/{stored}", headers=self._headers()) as resp:
                    if resp.status == 404:
                        return  # deleted on the peer since (slid out): not served there either
                    if resp.status != 200:
                        raise CatchUpFailed(f"GET {stored}: HTTP {resp.status}")
                    body = await resp.read()
                await origin.run_io(origin.storage.write, stored, body)

        await asyncio.gather(*(copy(stored) for stored in missing))
        await origin.run_io(self._adopt_files, state, set(missing))
        dvr = Dvr(origin.config.dvr_window_seconds, origin.config.dvr_enabled)
        try:
            dvr.adopt(state, time.monotonic())
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CatchUpFailed(f"unreadable replica state: {exc}") from None
        now = time.monotonic()
        for path, stored in self.adopting or ():
            dvr.received_while_adopting(path, stored, now)
        old = origin.dvr
        origin.dvr = dvr
        keep = dvr.stored_files()
        stale = [p for p in old.stored_files() | set(old.pending_delete) if p not in keep]
        await origin.run_io(origin.storage.delete, stale)
        try:
            await origin.run_io(origin.journal.rewrite, dvr.snapshot())
        except OSError as exc:
            log.error("cannot write the DVR journal: %s; the DVR would not survive a restart", exc)
        log.info(
            "DVR copied from the peer replica %s: %s (%d files fetched, %d uploads received meanwhile)",
            peer,
            ", ".join(f"{p} up to #{r.next_sequence - 1}" for p, r in sorted(dvr.renditions.items())) or "empty",
            len(missing),
            len(self.adopting or ()),
        )

    async def settle(self) -> None:
        """After the first copy: once the transcoder's uploads have reached this replica for a
        while, copy again before serving. The first copy misses what the peer indexed after it
        answered from uploads made before this replica was back in the fan-out (the transcoder finds
        a returning replica within a second or so); the second one is taken when every upload since
        is here too, so viewers balanced here from the first request see the peers' numbering."""
        deadline = time.monotonic() + SETTLE_MAX_SECONDS
        while time.monotonic() < deadline:
            if self.first_upload_at is not None and time.monotonic() - self.first_upload_at >= SETTLE_SECONDS:
                break
            await asyncio.sleep(0.2)
        else:
            log.warning("no upload reached this replica within %.0fs of copying a peer's DVR", SETTLE_MAX_SECONDS)
        await self.catch_up()

    async def watch(self) -> None:
        """Every few seconds, compare the last segments with each peer's; a replica that is behind
        one (it missed uploads the transcoder did not know it missed, or it was made public a moment
        after the others) copies that peer's index. So replicas that drifted apart come together."""
        if not self.enabled:
            return
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_SECONDS)) as http:
            while True:
                await asyncio.sleep(COMPARE_SECONDS)
                for peer in self.peer_urls:
                    try:
                        async with http.get(f"{peer}/{RECENT_PATH}", headers=self._headers()) as resp:
                            if resp.status != 200:
                                continue  # copying itself, or down: nothing to compare with
                            theirs = await resp.json()
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
                        continue
                    try:
                        why = behind(self.origin.dvr.recent(), theirs) if self.adopting is None else None
                    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
                        continue  # a peer of another version: its answer is not comparable
                    if why:
                        log.warning("this replica's DVR differs from the peer %s (%s): copying it", peer, why)
                        await self.catch_up(prefer=peer)
                        break

    def recent(self) -> Optional[dict]:
        """What a peer compares (``GET /upload/.recent``); None while copying a peer."""
        return None if self.adopting is not None else self.origin.dvr.recent()

    def _adopt_files(self, state: dict, fetched: set[str]) -> None:
        """What the transcoder sends once (the master playlists, at its start) or outside the HLS
        index (MPDs, DASH segments): served here as on the peer, under the same visibility."""
        origin = self.origin
        for path in state.get("manifests", ()):
            if origin.storage.existing(path) is None:
                continue  # deleted on the peer since
            origin.manifests.add(path)
            if path.endswith(".mpd"):
                text = (origin.storage.read(path) or b"").decode("utf-8", "replace")
                origin.mpds[path] = (time_shift_buffer_depth(text), init_patterns(text))
        for path in state.get("dash", ()):
            if path in fetched or (path not in origin.dash_uploaded_at and origin.storage.existing(path)):
                origin.dash_uploaded(path)
        origin.private_files.update(state.get("private", ()))

    def _missing(self, sizes: dict[str, int]) -> list[str]:
        missing = []
        for stored, size in sizes.items():
            full = self.origin.storage.existing(stored)
            try:
                if full is None or full.stat().st_size != int(size):
                    missing.append(stored)
            except OSError:
                missing.append(stored)
        return missing

    def _index_deferred(self) -> None:
        """The playlists that arrived during the copy, indexed now in their order of arrival."""
        self.adopting = None
        deferred, self.deferred = self.deferred, {}
        for path, playlist in deferred.items():
            self.origin.index_playlist(path, playlist)
        self.origin.update_dvr_metrics()
        self.origin.hls_changed()

    async def state(self) -> Optional[dict]:
        """What a peer copies (``GET /upload/.replica``); None while this replica copies one itself.

        The index is read on the event loop (where it changes), the file sizes off it: a long DVR
        is thousands of stat calls."""
        if self.adopting is not None:
            return None
        origin = self.origin
        state = origin.dvr.replica_state()
        state["manifests"] = sorted(origin.manifests)
        state["dash"] = sorted(origin.dash_uploaded_at)
        state["private"] = sorted(origin.private_files)
        files = sorted(origin.dvr.stored_files() | origin.manifests | set(origin.dash_uploaded_at))
        state["sizes"] = await origin.run_io(self._sizes, files)
        return state

    def _sizes(self, files: list[str]) -> dict[str, int]:
        sizes = {}
        for stored in files:
            full = self.origin.storage.existing(stored)
            try:
                if full is not None:
                    sizes[stored] = full.stat().st_size
            except OSError:
                continue  # deleted since (slid out): the peer does without it
        return sizes
