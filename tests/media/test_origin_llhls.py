"""LL-HLS at a real origin over real HTTP: parts uploaded one by one as the packager does, and what
LL-HLS clients then get (blocking reloads, the hinted part held until it exists, delta updates,
backstage tokens and cache headers). The full pipeline with ffmpeg is in test_transcoder_llhls."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import m3u8
import pytest

from tests.fixtures.media import wait_for
from tests.fixtures.origin import origins  # noqa: F401  (fixture)

pytestmark = pytest.mark.media

PART = 0.25
PARTS_PER_SEGMENT = 4
PLAYLIST = "hls/cmaf/360p/index.m3u8"


class Uploader:
    """The transcoder's side: a part's bytes, then the playlist that lists it (packager order)."""

    def __init__(self, origin, rung: str = "360p", run: str = "r1") -> None:
        self.origin = origin
        self.dir = f"hls/cmaf/{rung}"
        self.run = run
        self.client = httpx.Client(headers={"Authorization": f"Bearer {origin.upload_token}"}, timeout=10)
        self.number = 0
        self.segments: list[tuple[str, list[tuple[str, bool]]]] = []
        self.open: list[tuple[str, bool]] = []
        self.put(f"init_{run}.mp4", b"init-" + run.encode())

    def put(self, name: str, data: bytes) -> None:
        self.client.put(f"{self.origin.upload_url}/{self.dir}/{name}", content=data).raise_for_status()

    def name(self, n: int) -> str:
        return f"{self.run}_{n:06d}.m4s"

    def part(self, publish: bool = True) -> str:
        independent = self.number % PARTS_PER_SEGMENT == 0
        if independent and self.open:
            seg = f"{self.run}_seg{self.open[0][0]}"
            self.put(seg, b"".join(f"bytes of {n}".encode() for n, _ in self.open))
            self.segments.append((seg, self.open))
            self.open = []
        name = self.name(self.number)
        self.put(name, f"bytes of {name}".encode())
        self.open.append((name, independent))
        self.number += 1
        if publish:
            self.publish()
        return name

    def publish(self) -> None:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            "#EXT-X-TARGETDURATION:1",
            f"#EXT-X-PART-INF:PART-TARGET={PART}",
            "#EXT-X-MEDIA-SEQUENCE:0",
            f'#EXT-X-MAP:URI="init_{self.run}.mp4"',
        ]
        for seg, parts in self.segments:
            lines += [self.part_line(p) for p in parts] + [f"#EXTINF:{PART * len(parts):.6f},", seg]
        lines += [self.part_line(p) for p in self.open]
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.name(self.number)}"')
        self.put("index.m3u8", ("\n".join(lines) + "\n").encode())

    @staticmethod
    def part_line(part: tuple[str, bool]) -> str:
        return f'#EXT-X-PART:DURATION={PART},URI="{part[0]}"' + (",INDEPENDENT=YES" if part[1] else "")


@pytest.fixture
def live_ll(origins):
    origin = origins.start(phase="live")
    uploader = Uploader(origin)
    for _ in range(10):  # segments 0 and 1 closed, segment 2 has parts 0 and 1
        uploader.part()
    wait_for(lambda: origin.get(PLAYLIST).status_code == 200, timeout=10, what="the LL playlist")
    yield origin, uploader
    uploader.client.close()


def held(pool: concurrent.futures.ThreadPoolExecutor, origin, path: str, **params) -> concurrent.futures.Future:
    future = pool.submit(lambda: httpx.get(origin.url(path), params=params, timeout=30))
    time.sleep(0.5)  # the request is at the origin and held there
    return future


def test_blocking_reload_is_answered_when_the_part_is_uploaded(live_ll):
    origin, uploader = live_ll
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        reload = held(pool, origin, PLAYLIST, _HLS_msn=2, _HLS_part=2)
        assert not reload.done(), "answered before the part it asked for existed"
        name = uploader.part()
        response = reload.result(timeout=10)
    assert response.status_code == 200
    pl = m3u8.loads(response.text)
    assert name in [p.uri for p in pl.segments[-1].parts]
    assert f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{uploader.name(uploader.number)}"' in response.text
    # URL names the state it waited for: a CDN may share the answer for a short while
    assert response.headers["cache-control"] == "max-age=2"

    # a whole segment: held until it is complete, not on any part
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        reload = held(pool, origin, PLAYLIST, _HLS_msn=2)
        uploader.part()
        assert not reload.done(), "answered before segment 2 was complete"
        uploader.part()  # the first part of segment 3 closes segment 2
        response = reload.result(timeout=10)
    assert response.status_code == 200
    assert [s.uri for s in m3u8.loads(response.text).segments if s.uri][-1] == "r1_segr1_000008.m4s"


def test_requests_too_far_ahead_or_malformed_are_refused_at_once(live_ll):
    origin, _ = live_ll
    for params in (
        {"_HLS_msn": 4},
        {"_HLS_msn": 3, "_HLS_part": 12},
        {"_HLS_part": 1},
        {"_HLS_msn": "x"},
        {"_HLS_msn": -1},
    ):
        response = httpx.get(origin.url(PLAYLIST), params=params, timeout=2)
        assert response.status_code == 400, params
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["error"]
    # a request for what already exists is answered at once, with the current playlist
    response = httpx.get(origin.url(PLAYLIST), params={"_HLS_msn": 0, "_HLS_part": 0}, timeout=2)
    assert response.status_code == 200 and "r1_000009.m4s" in response.text


def test_a_reload_nothing_answers_ends_with_503_after_a_bounded_hold(live_ll):
    origin, _ = live_ll
    started = time.monotonic()
    response = httpx.get(origin.url(PLAYLIST), params={"_HLS_msn": 3}, timeout=30)
    assert response.status_code == 503 and response.headers["cache-control"] == "no-store"
    assert time.monotonic() - started < 20  # bounded: three target durations, not the client's timeout


def test_the_hinted_part_is_held_until_it_is_uploaded(live_ll):
    origin, uploader = live_ll
    hinted = uploader.name(uploader.number)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        request = held(pool, origin, f"hls/cmaf/360p/{hinted}")
        assert not request.done(), "answered before the part existed"
        uploader.part(publish=False)
        response = request.result(timeout=10)
    assert response.status_code == 200 and response.content == f"bytes of {hinted}".encode()
    assert "immutable" in response.headers["cache-control"]
    # a part nobody hints at is not held
    started = time.monotonic()
    assert origin.get("hls/cmaf/360p/r1_009999.m4s").status_code == 404
    assert time.monotonic() - started < 2


def test_delta_update_skips_old_segments(live_ll):
    origin, uploader = live_ll
    for _ in range(32):
        uploader.part()
    full = m3u8.loads(origin.get(PLAYLIST).text)
    response = origin.get(PLAYLIST, params={"_HLS_skip": "YES", "_HLS_msn": 9})
    delta = m3u8.loads(response.text)
    assert delta.skip.skipped_segments == 10 - 6
    assert [s.uri for s in delta.segments if s.uri] == [s.uri for s in full.segments if s.uri][4:]
    assert delta.server_control.can_block_reload == "YES"


def test_backstage_ll_playlists_need_a_token_and_carry_it_into_every_uri(origins):
    origin = origins.start(phase="backstage")
    uploader = Uploader(origin)
    for _ in range(10):
        uploader.part()
    assert origin.get(PLAYLIST, params={"_HLS_msn": 2, "_HLS_part": 1}).status_code == 403
    token = origin.token()
    response = origin.get(PLAYLIST, params={"_HLS_msn": 2, "_HLS_part": 1, "token": token})
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("private")
    uris = [line.split('URI="', 1)[1].split('"', 1)[0] for line in response.text.splitlines() if 'URI="' in line]
    assert uris and all(uri.endswith(f"?token={token}") for uri in uris)
    part = [u for u in uris if "r1_000009" in u][0]
    served = origin.get(f"hls/cmaf/360p/{part}")
    assert served.status_code == 200 and served.headers["cache-control"].startswith("private")
    assert origin.get("hls/cmaf/360p/r1_000009.m4s").status_code == 403


def test_many_held_reloads_are_all_answered_by_the_one_part_they_wait_for(live_ll):
    import asyncio

    origin, uploader = live_ll
    other = Uploader(origin, rung="180p")  # its parts must not answer reloads of 360p
    for _ in range(10):
        other.part()

    async def hold_many(n: int) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            requests = [
                asyncio.create_task(client.get(origin.url(PLAYLIST), params={"_HLS_msn": 2, "_HLS_part": 2}))
                for _ in range(n)
            ]
            await asyncio.sleep(1.0)
            assert not any(r.done() for r in requests), "answered before the part existed"
            await asyncio.to_thread(other.part)
            await asyncio.sleep(0.3)
            assert not any(r.done() for r in requests), "another rendition's part answered them"
            await asyncio.to_thread(uploader.part)
            return await asyncio.gather(*requests)

    responses = asyncio.run(hold_many(200))
    assert all(r.status_code == 200 and "r1_000010.m4s" in r.text for r in responses)


def test_thousands_of_held_reloads_each_on_its_own_connection_are_all_answered(live_ll):
    """Every LL-HLS viewer keeps a blocking reload open at all times: 5000 viewers are 5000 open
    connections, more than the 4096 every other listener allows. None may be refused, and each
    gets the playlist listing the part it waited for (asking again after a 503, as players do)."""
    import asyncio
    import resource

    origin, uploader = live_ll
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    viewers = 5000
    if hard < viewers + 256:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for {viewers} client sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = origin.config.http_port
    path = f"/{PLAYLIST}?_HLS_msn=2&_HLS_part=2"
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def viewer(i: int, connected: asyncio.Queue) -> tuple[int, bytes]:
        # One address per viewer (127.0.0.0/8 is all loopback): many viewers, not one client at its cap.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(f"127.{1 + i // 250}.0.{2 + i % 250}", 0)
        )
        connected.put_nowait(i)
        try:
            while True:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                )
                body = await reader.readexactly(length)
                status = int(head.split(b" ", 2)[1])
                if status == 503 and b"not available yet" in body:
                    continue  # held longer than the origin holds: ask again
                return status, body
        except (OSError, asyncio.IncompleteReadError) as exc:
            return 0, repr(exc).encode()
        finally:
            writer.close()

    async def hold_many() -> list[tuple[int, bytes]]:
        connected: asyncio.Queue = asyncio.Queue()
        tasks = []
        for i in range(viewers):
            tasks.append(asyncio.create_task(viewer(i, connected)))
            if i % 500 == 499:
                await asyncio.sleep(0.2)  # not faster than the origin accepts (its accept queue)
        while connected.qsize() < viewers and not all(t.done() for t in tasks):
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert not any(t.done() for t in tasks), [t.result() for t in tasks if t.done()][:3]
        await asyncio.to_thread(uploader.part)
        return await asyncio.gather(*tasks)

    try:
        answers = asyncio.run(hold_many())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    failed = [(status, body[:120]) for status, body in answers if status != 200 or b"r1_000010.m4s" not in body]
    assert not failed, f"{len(failed)} of {viewers} not answered with the part, e.g. {failed[:3]}"
