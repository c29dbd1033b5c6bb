"""The origin under load, side by side with nginx serving the same files on the same machine.

    python3 bench/origin_load.py                       # everything, default sizes
    python3 bench/origin_load.py --phases throughput --seconds 8
    python3 bench/origin_load.py --phases held --held 10000

What runs: the real origin agent (``onair agent origin``, started as the product starts it, with
its own config file), fed through its real upload port by a feeder that uploads like the
transcoder does (LL-HLS parts then the playlist listing them, whole HLS segments, a DASH MPD and
its segments) at real pace. The feeder writes the same bytes (and the playlists/MPD exactly as the
origin renders them) into a directory that Debian's nginx serves (``sendfile on``, no access log,
one worker per core), so both servers are asked for the same files.

Phases (``--phases``, comma-separated):

* ``throughput``: ``--connections`` keep-alive connections, each asking again as soon as answered,
  for a 750 KB segment, a 94 KB part, an LL media playlist and the MPD, one at a time.
* ``viewers``: ``--viewers`` simulated viewers per tier, one tier at a time: standard HLS (playlist
  polled every target duration, each new segment downloaded), LL-HLS (blocking reloads
  ``_HLS_msn``/``_HLS_part`` for the next part, held open at the origin, then the part; nginx cannot
  hold a request, its viewers poll the playlist every half part), DASH (MPD every segment, each new
  segment).
* ``held``: ``--held`` blocking playlist requests for the next part all held at once; the part is
  then uploaded and every request must be answered 200 with a playlist listing it.

Figures: requests/s per core (requests answered / CPU seconds the server's processes used,
from psutil: the origin process, or nginx's master and workers), viewers per core (viewers /
server cores busy) and p99 response time (of non-blocking requests; for blocking ones, the delay
from the part's upload to the answer). The load generator runs in ``--clients`` processes of its
own (raw asyncio HTTP/1.1, uvloop when installed), spread over 127.0.0.0/8 source addresses so the
origin's per-address connection cap does not refuse them. The bench raises its own soft
RLIMIT_NOFILE to the hard limit (``ulimit -Hn``; each held request is one socket in a client
process); raise the hard limit (``ulimit -Hn``, as root) for more than it allows.

Everything it started is stopped on exit; bounded by ``--seconds`` per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "operator"), str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
)

from tests.fixtures.media import free_port  # noqa: E402
from tests.fixtures.origin import OriginFactory  # noqa: E402

HOST = "127.0.0.1"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# 3 Mb/s: a 2 s segment is 750 KB (the measurement), an LL part of 0.25 s 94 KB.
BYTES_PER_SECOND = 375_000
SEGMENT_SECONDS = 2.0
LL_PART_SECONDS = 0.25
LL_PARTS_PER_SEGMENT = 4
# The held phase's rendition: 1 s parts, 4 s segments, so the origin holds a blocking request
# 3 target durations = 12 s, time enough for a Python client to open 10,000 connections.
HELD_PART_SECONDS = 1.0
HELD_PARTS_PER_SEGMENT = 4
STD = "hls/ts/720p/index.m3u8"
LL = "hls/cmaf/720p/index.m3u8"
HELD = "hls/cmaf/held/index.m3u8"
MPD = "dash/manifest.mpd"


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# ----------------------------------------------------------------------------- servers
class Nginx:
    CONF = """
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {connections}; }}
http {{
    include /etc/nginx/mime.types;
    types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; application/dash+xml mpd; }}
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 30s;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    server {{
        listen {host}:{port} reuseport backlog=4096;
        root {root};
        location ~ \\.(m3u8|mpd)$ {{ add_header Cache-Control no-cache; }}
    }}
}}
"""

    def __init__(self, work: Path, root: Path) -> None:
        self.dir = work / "nginx"
        self.dir.mkdir()
        self.root = root
        self.port = free_port()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        (self.dir / "nginx.conf").write_text(
            self.CONF.format(
                workers=os.cpu_count() or 1,
                dir=self.dir,
                nofile=nofile,
                connections=max(1024, nofile // 2 - 64),
                host=HOST,
                port=self.port,
                root=root,
            )
        )
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://{HOST}:{self.port}/", timeout=1)
                break
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {(self.dir / 'error.log').read_text()[-2000:]}") from None
                time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def pids(self) -> list[int]:
        return [self.proc.pid] + [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


# ----------------------------------------------------------------------------- the feeder
class Feeder:
    """The transcoder's uploads at real pace, mirrored into nginx's root as the origin serves them."""

    def __init__(self, origin, mirror: Path) -> None:
        self.origin = origin
        self.mirror = mirror
        self.client = httpx.Client(headers={"Authorization": f"Bearer {origin.upload_token}"}, timeout=30)
        self.public = httpx.Client(timeout=30)
        self.segment = payload(int(BYTES_PER_SECOND * SEGMENT_SECONDS), 1)
        self.part = payload(int(BYTES_PER_SECOND * LL_PART_SECONDS), 2)
        self.std_segments: list[str] = []
        self.dash_number = 0
        self.ll = _LlRendition("hls/cmaf/720p", LL_PART_SECONDS, LL_PARTS_PER_SEGMENT, self.part)
        # Its parts stay listed while it waits for the held phase: the throughput phase asks for them.
        self.held = _LlRendition("hls/cmaf/held", HELD_PART_SECONDS, HELD_PARTS_PER_SEGMENT, self.part)
        self.started = time.time()
        self.listed_at = 0.0
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.published: dict[tuple[int, int], float] = {}  # the held rendition's (msn, part) -> upload done

    def put(self, path: str, data: bytes) -> None:
        self.client.put(f"{self.origin.upload_url}/{path}", content=data).raise_for_status()
        if not path.endswith((".m3u8", ".mpd")):
            self.write_mirror(path, data)

    def write_mirror(self, path: str, data: bytes) -> None:
        target = self.mirror / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def mirror_served(self, path: str) -> None:
        """nginx gets the playlist/MPD exactly as the origin serves it."""
        response = self.public.get(self.origin.url(path))
        if response.status_code == 404:
            return  # no whole segment yet: nothing to serve on either side
        response.raise_for_status()
        self.write_mirror(path, response.content)

    # -- standard HLS (MPEG-TS, 2 s segments)
    def std_step(self) -> None:
        n = len(self.std_segments)
        name = f"r1_{n:06d}.ts"
        self.put(f"hls/ts/720p/{name}", self.segment)
        self.std_segments.append(name)
        window = self.std_segments[-6:]
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{int(SEGMENT_SECONDS)}",
            f"#EXT-X-MEDIA-SEQUENCE:{len(self.std_segments) - len(window)}",
        ]
        for seg in window:
            lines += [f"#EXTINF:{SEGMENT_SECONDS:.6f},", seg]
        self.put(STD, ("\n".join(lines) + "\n").encode())
        self.mirror_served(STD)

    # -- DASH ($Number$, 2 s segments)
    def dash_step(self) -> None:
        if self.dash_number == 0:
            self.put("dash/init-stream0.m4s", b"init" * 200)
        self.dash_number += 1
        self.put(f"dash/chunk-stream0-{self.dash_number:05d}.m4s", self.segment)
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        mpd = f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic"
 availabilityStartTime="{start}" minimumUpdatePeriod="PT{SEGMENT_SECONDS:g}S" minBufferTime="PT2S"
 timeShiftBufferDepth="PT12S" suggestedPresentationDelay="PT6S">
 <Period id="0" start="PT0S">
  <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true">
   <Representation id="0" codecs="avc1.64001f" bandwidth="3000000" width="1280" height="720">
    <SegmentTemplate timescale="1000" duration="{int(SEGMENT_SECONDS * 1000)}" startNumber="1"
     initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s"/>
   </Representation>
  </AdaptationSet>
 </Period>
</MPD>
"""
        self.put(MPD, mpd.encode())
        self.mirror_served(MPD)

    def ll_step(self, rendition: "_LlRendition", path: str) -> tuple[int, int]:
        for name, data in rendition.next_uploads():
            self.put(f"{rendition.dir}/{name}", data)
        self.listed_at = time.time()  # the playlist naming the part goes up: held requests are answered from here
        self.put(path, rendition.playlist().encode())
        self.mirror_served(path)
        return rendition.last_listed()

    def start(self) -> None:
        # A few segments first, so every viewer finds something at once.
        for _ in range(3):
            self.std_step()
            self.dash_step()
        for _ in range(2 * LL_PARTS_PER_SEGMENT + 1):
            self.ll_step(self.ll, LL)
        for _ in range(HELD_PARTS_PER_SEGMENT + 1):
            self.ll_step(self.held, HELD)
        self._thread = threading.Thread(target=self._run, daemon=True, name="feeder")
        self._thread.start()

    def _run(self) -> None:
        next_part = next_segment = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_part:
                self.ll_step(self.ll, LL)
                next_part += LL_PART_SECONDS
            if now >= next_segment:
                self.std_step()
                self.dash_step()
                next_segment += SEGMENT_SECONDS
            self._stop.wait(max(0.0, min(next_part, next_segment) - time.monotonic()))

    def publish_held_part(self) -> tuple[int, int]:
        msn_part = self.ll_step(self.held, HELD)
        self.published[msn_part] = self.listed_at
        return msn_part

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
        self.client.close()
        self.public.close()


class _LlRendition:
    """An LL-HLS rendition as the packager writes it: parts, the segment once whole, the playlist."""

    def __init__(self, directory: str, part_seconds: float, per_segment: int, part: bytes) -> None:
        self.dir = directory
        self.part_seconds = part_seconds
        self.per_segment = per_segment
        self.part = part
        self.number = 0
        self.closed: list[tuple[str, list[str]]] = []
        self.open: list[str] = []
        self.init_sent = False

    def name(self, n: int) -> str:
        return f"r1_{n:06d}.m4s"

    def next_uploads(self) -> list[tuple[str, bytes]]:
        uploads = []
        if not self.init_sent:
            uploads.append(("init_r1.mp4", b"init" * 200))
            self.init_sent = True
        if self.number % self.per_segment == 0 and self.open:
            seg = f"r1_seg{self.open[0]}"
            uploads.append((seg, self.part * len(self.open)))
            self.closed.append((seg, self.open))
            self.closed = self.closed[-8:]
            self.open = []
        name = self.name(self.number)
        uploads.append((name, self.part))
        self.open.append(name)
        self.number += 1
        return uploads

    def last_listed(self) -> tuple[int, int]:
        """(msn, part index) of the last part listed, in the origin's numbering (it starts at 0)."""
        return self.number // self.per_segment - (0 if self.number % self.per_segment else 1), (
            self.number - 1
        ) % self.per_segment

    def playlist(self) -> str:
        first = (self.number - len(self.open)) // self.per_segment - len(self.closed)
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{int(self.part_seconds * self.per_segment)}",
            f"#EXT-X-PART-INF:PART-TARGET={self.part_seconds}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            '#EXT-X-MAP:URI="init_r1.mp4"',
        ]
        for seg, parts in self.closed:
            lines += [self._part_line(p) for p in parts]
            lines += [f"#EXTINF:{self.part_seconds * len(parts):.6f},", seg]
        lines += [self._part_line(p) for p in self.open]
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.name(self.number)}"')
        return "\n".join(lines) + "\n"

    def _part_line(self, name: str) -> str:
        independent = int(name[3:9]) % self.per_segment == 0
        return f'#EXT-X-PART:DURATION={self.part_seconds},URI="{name}"' + (",INDEPENDENT=YES" if independent else "")


# ----------------------------------------------------------------------------- the load generator
class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection: GET, Content-Length bodies (what both servers send here)."""

    def __init__(self, host: str, port: int, local: str) -> None:
        self.host, self.port, self.local = host, port, local
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def get(self, path: str) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(
                    self.host, self.port, local_addr=(self.local, 0), limit=1 << 20
                )
            try:
                self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
                assert self.reader is not None
                head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()  # the server closed an idle keep-alive connection: once more on a new one
                if attempt:
                    raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in headers:
            raise HttpError(f"no Content-Length in the answer to {path}: {lines[0]}")
        body = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def local_address(i: int) -> str:
    return f"127.{1 + (i // 250) % 250}.{(i // 62500) % 250}.{2 + i % 250}"


@dataclass
class Tally:
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # of non-blocking requests
    held_delays: list[float] = field(default_factory=list)  # blocking: part upload -> answer
    retries: int = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def merge(self, other: "Tally") -> None:
        self.ok += other.ok
        self.retries += other.retries
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        self.latencies += other.latencies
        self.held_delays += other.held_delays


URI_LINE = re.compile(r"^([^#\s][^\s]*)$", re.M)
PART_URI = re.compile(r'#EXT-X-PART:[^\n]*URI="([^"]+)"')


async def timed_get(conn: Connection, path: str, tally: Tally, blocking: bool = False) -> Optional[bytes]:
    start = time.monotonic()
    try:
        status, body = await conn.get(path)
    except (OSError, asyncio.IncompleteReadError, HttpError, asyncio.LimitOverrunError) as exc:
        conn.close()
        tally.error(type(exc).__name__)
        return None
    if status != 200:
        tally.error(f"HTTP {status}")
        return None
    tally.ok += 1
    if not blocking:
        tally.latencies.append(time.monotonic() - start)
    return body


async def hammer(host: str, port: int, path: str, connections: int, seconds: float, offset: int) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds

    async def one(i: int) -> None:
        conn = Connection(host, port, local_address(offset + i))
        while time.monotonic() < deadline:
            if await timed_get(conn, path, tally) is None:
                await asyncio.sleep(0.05)
        conn.close()

    await asyncio.gather(*(one(i) for i in range(connections)))
    return tally


def directory_of(path: str) -> str:
    return path.rsplit("/", 1)[0]


async def std_viewer(conn: Connection, playlist: str, period: float, deadline: float, tally: Tally) -> None:
    seen: set[str] = set()
    first = True
    while time.monotonic() < deadline:
        started = time.monotonic()
        body = await timed_get(conn, playlist, tally)
        if body is not None:
            uris = URI_LINE.findall(body.decode())
            new = [u for u in uris if u not in seen]
            for uri in new[-1:] if first else new:  # a player starts at the live edge
                await timed_get(conn, f"/{directory_of(playlist.lstrip('/'))}/{uri}", tally)
            seen.update(uris)
            first = False
        await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))


async def dash_viewer(conn: Connection, deadline: float, tally: Tally) -> None:
    number = None
    while time.monotonic() < deadline:
        started = time.monotonic()
        body = await timed_get(conn, f"/{MPD}", tally)
        if body is not None:
            latest = int((time.time() - started_at_of(body)) // SEGMENT_SECONDS)
            if number is None:
                number = latest
            while number <= latest:
                await timed_get(conn, f"/dash/chunk-stream0-{number:05d}.m4s", tally)
                number += 1
        await asyncio.sleep(max(0.0, SEGMENT_SECONDS - (time.monotonic() - started)))


_AST = re.compile(rb'availabilityStartTime="([^"]+)"')


def started_at_of(mpd: bytes) -> float:
    match = _AST.search(mpd)
    if match is None:
        raise HttpError("MPD without availabilityStartTime")
    return time.mktime(time.strptime(match.group(1).decode()[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone


def next_part_of(playlist: str, per_segment: int) -> tuple[int, int, list[str]]:
    """(msn, part) of the part after the last listed, and the part URIs listed."""
    sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist).group(1))
    segments = len(URI_LINE.findall(playlist))
    parts = PART_URI.findall(playlist)
    open_parts = playlist.rsplit("#EXTINF", 1)[-1].count("#EXT-X-PART:")
    msn = sequence + segments
    return msn, open_parts, parts


async def ll_viewer(conn: Connection, part_conn: Connection, blocking: bool, deadline: float, tally: Tally) -> None:
    playlist_path = f"/{LL}"
    body = await timed_get(conn, playlist_path, tally)
    seen: set[str] = set(PART_URI.findall(body.decode())) if body else set()
    msn, part, _ = next_part_of(body.decode(), LL_PARTS_PER_SEGMENT) if body else (0, 0, [])
    while time.monotonic() < deadline:
        started = time.monotonic()
        if blocking:
            body = await timed_get(conn, f"{playlist_path}?_HLS_msn={msn}&_HLS_part={part}", tally, blocking=True)
        else:
            body = await timed_get(conn, playlist_path, tally)
        if body is None:
            await asyncio.sleep(LL_PART_SECONDS / 2)
            continue
        text = body.decode()
        msn, part, parts = next_part_of(text, LL_PARTS_PER_SEGMENT)
        for uri in parts:
            if uri not in seen:
                await timed_get(part_conn, f"/{directory_of(LL)}/{uri}", tally)
                seen.add(uri)
        if not blocking:
            await asyncio.sleep(max(0.0, LL_PART_SECONDS / 2 - (time.monotonic() - started)))


async def viewers(host: str, port: int, tier: str, count: int, seconds: float, offset: int, blocking: bool) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds

    async def one(i: int) -> None:
        await asyncio.sleep(random.random() * (SEGMENT_SECONDS if tier != "llhls" else LL_PART_SECONDS))
        conn = Connection(host, port, local_address(offset + i))
        try:
            if tier == "hls":
                await std_viewer(conn, f"/{STD}", SEGMENT_SECONDS, deadline, tally)
            elif tier == "dash":
                await dash_viewer(conn, deadline, tally)
            else:
                part_conn = Connection(host, port, local_address(offset + i))
                await ll_viewer(conn, part_conn, blocking, deadline, tally)
                part_conn.close()
        finally:
            conn.close()

    await asyncio.gather(*(one(i) for i in range(count)))
    return tally


async def held(
    host: str, port: int, count: int, offset: int, msn: int, part: int, expected: str, ready, connect_rate: float
) -> Tally:
    tally = Tally()
    path = f"/{HELD}?_HLS_msn={msn}&_HLS_part={part}"
    sent = 0
    all_sent = asyncio.Event()

    async def one(i: int) -> None:
        nonlocal sent
        # Paced: faster than the origin accepts, connections overflow the kernel's accept queue and
        # wait for SYN-ACK retransmissions (seconds, doubling), which measures the kernel, not the origin.
        await asyncio.sleep(i / connect_rate)
        conn = Connection(host, port, local_address(offset + i))
        counted = False
        try:
            while True:
                request = asyncio.ensure_future(conn.get(path))
                await asyncio.sleep(0)
                if not counted:
                    counted = True
                    sent += 1
                    if sent == count:
                        all_sent.set()
                try:
                    status, body = await request
                except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                    tally.error(type(exc).__name__)
                    return
                if status == 503 and b"not available yet" in body and time.monotonic() < give_up:
                    tally.retries += 1  # held past the origin's limit before the part came: ask again, as players do
                    continue
                if status != 200:
                    tally.error(f"HTTP {status}: {body[:80].decode(errors='replace')}")
                elif expected not in body.decode():
                    tally.error("answered without the part")
                else:
                    tally.ok += 1
                    tally.held_delays.append(time.time())
                return
        finally:
            conn.close()

    give_up = time.monotonic() + 120
    tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(60):
            await all_sent.wait()
    ready.set()
    await asyncio.gather(*tasks)
    return tally


def _client(job: tuple, results: "multiprocessing.Queue") -> None:
    raise_fd_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    kind, args = job[0], job[1:]
    if kind == "hammer":
        tally = asyncio.run(hammer(*args))
    elif kind == "viewers":
        tally = asyncio.run(viewers(*args))
    else:
        tally = asyncio.run(held(*args))
    results.put(tally)


def run_clients(jobs: list[tuple]) -> Tally:
    results: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client, args=(job, results), daemon=True) for job in jobs]
    for p in procs:
        p.start()
    total = Tally()
    try:
        for _ in procs:
            total.merge(results.get(timeout=600))
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return total


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def p99(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    return f"{statistics.quantiles(values, n=100)[98] * 1000:.1f} ms"


# ----------------------------------------------------------------------------- phases
@dataclass
class Server:
    name: str
    host: str
    port: int
    pids: Callable
    log: Callable[[], str] = lambda: ""
    metrics: Callable[[], str] = lambda: ""

    def open_connections(self) -> int:
        match = re.search(r'^onair_origin_connections\{listener="public"\} ([0-9.e+]+)$', self.metrics(), re.M)
        return int(float(match.group(1))) if match else 0

    def fast_answers(self) -> Optional[int]:
        """The origin's answers written without aiohttp's request handling so far (None: not the origin)."""
        match = re.search(r"^onair_origin_http_fast_responses_total ([0-9.e+]+)$", self.metrics(), re.M)
        return int(float(match.group(1))) if match else None

    def measure(self, jobs: list[tuple]) -> tuple[Tally, float, float]:
        before, wall = cpu_seconds(self.pids()), time.monotonic()
        tally = run_clients(jobs)
        return tally, cpu_seconds(self.pids()) - before, time.monotonic() - wall


def throughput(servers: list[Server], feeder: Feeder, args) -> None:
    # Files that stay in the window however long it runs: the held rendition moves in the held phase only.
    part = PART_URI.findall(httpx.get(f"http://{servers[0].host}:{servers[0].port}/{HELD}").text)[-1]
    targets = [
        ("segment 750 KB", f"/hls/ts/720p/{feeder.std_segments[-1]}"),
        ("LL part 94 KB", f"/{directory_of(HELD)}/{part}"),
        ("LL playlist", f"/{LL}"),
        ("DASH MPD", f"/{MPD}"),
    ]
    print(f"\n== throughput: {args.connections} keep-alive connections asking back to back, {args.seconds:g} s each")
    print(f"{'request':<16} {'server':<7} {'req/s':>8} {'cores':>6} {'req/s/core':>11} {'p99':>10} {'errors':>7}")
    for label, path in targets:
        if args.requests and not any(word in label for word in args.requests.split(",")):
            continue
        for server in servers:
            per = args.connections // args.clients
            jobs = [("hammer", server.host, server.port, path, per, args.seconds, i * per) for i in range(args.clients)]
            fast_before = server.fast_answers()
            tally, cpu, wall = server.measure(jobs)
            fast_after = server.fast_answers()
            fast = (
                f"  fast answers {100 * (fast_after - fast_before) / tally.ok:.0f}%"
                if fast_before is not None and fast_after is not None and tally.ok
                else ""
            )
            print(
                f"{label:<16} {server.name:<7} {tally.ok / wall:>8.0f} {cpu / wall:>6.2f} "
                f"{tally.ok / cpu if cpu else 0:>11.0f} {p99(tally.latencies):>10} {sum(tally.errors.values()):>7}"
                + (f"  {tally.errors}" if tally.errors else "")
                + fast,
                flush=True,
            )


def viewer_tiers(servers: list[Server], args) -> None:
    print(f"\n== viewers: {args.viewers} per tier, {args.seconds:g} s per tier and server")
    print(
        f"{'tier':<8} {'server':<7} {'req/s':>8} {'cores':>6} {'viewers/core':>13} {'req/s/core':>11} "
        f"{'p99':>10} {'errors':>7}"
    )
    for tier in args.tiers.split(","):
        for server in servers:
            per = args.viewers // args.clients
            blocking = server.name == "origin"
            jobs = [
                ("viewers", server.host, server.port, tier, per, args.seconds, i * per, blocking)
                for i in range(args.clients)
            ]
            tally, cpu, wall = server.measure(jobs)
            cores = cpu / wall
            label = tier + (" (poll)" if tier == "llhls" and not blocking else "")
            print(
                f"{label:<8} {server.name:<7} {tally.ok / wall:>8.0f} {cores:>6.2f} "
                f"{(per * args.clients) / cores if cores else 0:>13.0f} {tally.ok / cpu if cpu else 0:>11.0f} "
                f"{p99(tally.latencies):>10} {sum(tally.errors.values()):>7}"
                + (f"  {tally.errors}" if tally.errors else ""),
                flush=True,
            )


def held_requests(origin_server: Server, feeder: Feeder, args) -> None:
    print(f"\n== held: {args.held} blocking playlist requests for the next part of {HELD}, all held at once")
    feeder_text = httpx.get(f"http://{origin_server.host}:{origin_server.port}/{HELD}").text
    msn, part, _ = next_part_of(feeder_text, HELD_PARTS_PER_SEGMENT)
    expected = feeder.held.name(feeder.held.number)
    ctx = multiprocessing.get_context()
    ready = [ctx.Event() for _ in range(args.clients)]
    per = args.held // args.clients
    jobs = [
        (
            "held",
            origin_server.host,
            origin_server.port,
            per,
            i * per,
            msn,
            part,
            expected,
            ready[i],
            args.connect_rate / args.clients,
        )
        for i in range(args.clients)
    ]
    results: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client, args=(job, results), daemon=True) for job in jobs]
    started = time.monotonic()
    for p in procs:
        p.start()
    for event in ready:
        event.wait(90)
    sent = time.monotonic() - started
    # A connection the client sees open may still wait in the kernel's accept queue (or, the queue
    # full, for a SYN-ACK retransmission): the part goes up once the origin holds every request.
    deadline = time.monotonic() + 90
    while origin_server.open_connections() < args.held and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the last request heads accepted are read and held
    connected = time.monotonic() - started
    published = feeder.publish_held_part()
    at = feeder.published[published]
    total = Tally()
    for _ in procs:
        total.merge(results.get(timeout=180))
    for p in procs:
        p.join(10)
    origin_log = origin_server.log()
    if origin_log:
        print(
            "origin log (warnings and errors):\n"
            + "\n".join(line for line in origin_log.splitlines() if " WARNING " in line or " ERROR " in line)[-3000:]
        )
    delays = [t - at for t in total.held_delays]
    print(
        f"all {args.held} sent in {sent:.1f} s, {origin_server.open_connections()} connections open at the "
        f"origin after {connected:.1f} s; part {published} uploaded: {total.ok} answered 200 with it, "
        f"errors {sum(total.errors.values())} {total.errors or ''}, re-asked after a 503 {total.retries}; "
        f"answer delay after the upload p50 {statistics.median(delays) * 1000 if delays else 0:.0f} ms, "
        f"p99 {p99(delays)}, last {max(delays, default=0) * 1000:.0f} ms",
        flush=True,
    )


@contextlib.contextmanager
def rig(args) -> Iterator[tuple[list[Server], Feeder]]:
    work = Path(tempfile.mkdtemp(prefix="origin-load-"))
    work.chmod(0o755)  # nginx's workers (nobody) read the mirror below it
    factory = OriginFactory(work)
    feeder = nginx = None
    try:
        origin = factory.start(phase="live", dvr_window_seconds=60)
        mirror = work / "nginx-root"
        mirror.mkdir()
        feeder = Feeder(origin, mirror)
        feeder.start()
        origin_pid = origin.proc.pid
        servers = [
            Server("origin", HOST, origin.config.http_port, lambda: [origin_pid], origin.log_text, origin.metrics)
        ]
        if not args.no_nginx:
            nginx = Nginx(work, mirror)
            servers.append(Server("nginx", HOST, nginx.port, nginx.pids))
        yield servers, feeder
    finally:
        if feeder is not None:
            feeder.stop()
        if nginx is not None:
            nginx.stop()
        factory.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="throughput,viewers,held")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=64, help="throughput phase")
    parser.add_argument("--viewers", type=int, default=500, help="per tier")
    parser.add_argument("--requests", default="", help="throughput phase: only these (segment,part,playlist,MPD)")
    parser.add_argument("--tiers", default="hls,llhls,dash", help="viewers phase")
    parser.add_argument("--held", type=int, default=10000)
    parser.add_argument(
        "--connect-rate",
        type=float,
        default=2000.0,
        help="held phase: new connections per second, all client processes together",
    )
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--no-nginx", action="store_true")
    args = parser.parse_args()
    hard = raise_fd_limit()
    if args.held // args.clients + 64 > hard:
        raise SystemExit(
            f"RLIMIT_NOFILE hard limit {hard} is below {args.held // args.clients} sockets per client "
            f"process: use more --clients or raise it (ulimit -Hn, as root)"
        )
    phases = args.phases.split(",")
    with rig(args) as (servers, feeder):
        print(
            f"origin pid {servers[0].pids()[0]}"
            + (f", nginx pids {servers[1].pids()}" if len(servers) > 1 else "")
            + f"; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start"
        )
        if "throughput" in phases:
            throughput(servers, feeder, args)
        if "viewers" in phases:
            viewer_tiers(servers, args)
        if "held" in phases:
            held_requests(servers[0], feeder, args)


if __name__ == "__main__":
    main()
