"""Origin replicas (``origin/replicas.py``): a replica that copies a peer's index serves the same
playlists, parts and numbering from then on, and the transcoder's fan-out (``FanoutSink``) keeps
publishing while a replica is down, then asks it to catch up."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from onair.agent.hls import parse_media_playlist
from onair.agent.origin.dvr import Dvr, behind
from onair.agent.transcoder.sinks import FanoutSink, SinkError
from tests.fixtures.media import free_port
from tests.unit.test_llhls import CMAF, T0, LLTranscoder

PLAYLIST = CMAF.format(rung="360p")
VIEWS = [dict(public=False), dict(public=True), dict(public=False, skip=True), dict(public=True, skip=True)]


class Tee:
    """What the fan-out does: every upload and playlist reaches every replica, in the same order."""

    def __init__(self, *dvrs: Dvr) -> None:
        self.dvrs = dvrs

    def placement(self, path, identical):
        stored = {d.placement(path, identical) for d in self.dvrs}
        assert len(stored) == 1
        return stored.pop()

    def uploaded(self, path, stored, now):
        for d in self.dvrs:
            d.uploaded(path, stored, now)

    def ingest(self, path, playlist, now):
        return [d.ingest(path, playlist, now) for d in self.dvrs][0]


def renders(dvr: Dvr) -> list:
    return [dvr.render(PLAYLIST, ended=False, **view) for view in VIEWS]


def copied(peer: Dvr, now: float) -> Dvr:
    replica = Dvr(window_seconds=peer.window_seconds)
    replica.adopt(json.loads(json.dumps(peer.replica_state())), now)  # as it travels: JSON
    return replica


def test_a_replica_that_copied_a_peers_index_serves_the_same_playlists_from_then_on():
    peer = Dvr(window_seconds=6)
    peer.set_public(False, 0.0, T0)
    clock = [0.0]
    tx = LLTranscoder(peer, clock=clock)
    tx.run_for(14)  # a backstage preview: private
    peer.set_public(True, clock[0], T0)
    tx.run_for(30)  # live, with the window sliding: numbering far from 0
    replica = copied(peer, clock[0])
    assert renders(replica) == renders(peer)
    assert "#EXT-X-PART:" in renders(replica)[1] and "#EXT-X-PRELOAD-HINT" in renders(replica)[1]
    assert replica.public_file(next(iter(replica.renditions[PLAYLIST].open_parts)).path)
    tx.dvr = Tee(peer, replica)
    for _ in range(12):
        tx.part()
        assert renders(replica) == renders(peer)


def test_uploads_received_while_copying_are_indexed_once_and_in_step():
    peer = Dvr(window_seconds=60)
    clock = [0.0]
    tx = LLTranscoder(peer, clock=clock)
    tx.run_for(10)
    # The replica is already in the fan-out when it asks for the peer's state; more comes meanwhile.
    before = Dvr(window_seconds=60)
    received: list[tuple[str, str]] = []

    class Recording(Tee):
        def uploaded(self, path, stored, now):
            super().uploaded(path, stored, now)
            received.append((path, stored))

    tx.dvr = Recording(peer, before)
    tx.run_for(3)  # indexed by the peer before it answers: in the copy
    state = json.loads(json.dumps(peer.replica_state()))
    deferred = []
    for _ in range(5):  # after the peer answered: the replica stores the files, its playlists wait
        tx.part(publish=False)
        peer.ingest(tx.playlist, parse_media_playlist(tx.text()), clock[0])
        deferred.append(tx.text())
    replica = Dvr(window_seconds=60)
    replica.adopt(state, clock[0])
    for path, stored in received:
        replica.received_while_adopting(path, stored, clock[0])
    replica.ingest(tx.playlist, parse_media_playlist(deferred[-1]), clock[0])
    assert renders(replica) == renders(peer)
    tx.dvr = Tee(peer, replica)
    tx.run_for(6)
    assert renders(replica) == renders(peer)


def test_without_the_copy_a_late_replica_numbers_from_zero():
    """Why a replica copies: joining the fan-out alone it would number differently."""
    peer = Dvr(window_seconds=60)
    tx = LLTranscoder(peer)
    tx.run_for(12)
    late = Dvr(window_seconds=60)
    tx.dvr = Tee(peer, late)
    tx.run_for(8)
    assert renders(late)[0] != renders(peer)[0]


async def _replica(handler):
    app = web.Application()
    app.router.add_route("*", "/upload/{path:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, port


async def test_fanout_publishes_to_every_replica_leaves_a_dead_one_out_and_has_it_catch_up():
    seen: dict[int, list] = {0: [], 1: []}

    def handler_for(i):
        async def handler(request: web.Request) -> web.Response:
            seen[i].append((request.method, request.match_info["path"], await request.read()))
            return web.Response(status=200 if request.method == "POST" else 204 if request.method != "PUT" else 201)

        return handler

    runner0, port0 = await _replica(handler_for(0))
    runner1, port1 = await _replica(handler_for(1))
    sink = FanoutSink([f"http://127.0.0.1:{port0}/upload", f"http://127.0.0.1:{port1}/upload"], token=lambda: "t")
    try:
        await sink.put("hls/a.m4s", b"a")
        await sink.delete("hls/old.m4s")
        assert seen[0] == seen[1] == [("PUT", "hls/a.m4s", b"a"), ("DELETE", "hls/old.m4s", b"")]
        await runner1.cleanup()  # replica 1 dies
        await sink.put("hls/b.m4s", b"b")  # published: replica 0 has it
        await sink.put("hls/c.m4s", b"c")
        assert [p for _, p, _ in seen[0]][-2:] == ["hls/b.m4s", "hls/c.m4s"]
        # Back on the same address: probed, asked to copy a peer's index, then in the fan-out again.
        app = web.Application()
        app.router.add_route("*", "/upload/{path:.*}", handler_for(1))
        runner1 = web.AppRunner(app)
        await runner1.setup()
        await web.TCPSite(runner1, "127.0.0.1", port1).start()
        for _ in range(50):
            if ("POST", ".resync", b"") in seen[1]:
                break
            await asyncio.sleep(0.1)
        assert [(m, p) for m, p, _ in seen[1][2:]] == [("GET", ".alive"), ("POST", ".resync")]
        await sink.put("hls/d.m4s", b"d")
        assert seen[1][-1] == ("PUT", "hls/d.m4s", b"d")
    finally:
        await sink.close()
        await runner0.cleanup()
        await runner1.cleanup()


async def test_fanout_fails_only_when_no_replica_stored_the_file():
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "wrong upload token"}, status=403)

    runner, port = await _replica(refuse)
    dead = free_port()
    sink = FanoutSink([f"http://127.0.0.1:{port}/upload", f"http://127.0.0.1:{dead}/upload"], token=lambda: "t")
    try:
        try:
            await sink.put("hls/a.m4s", b"a")
        except SinkError as exc:
            assert "wrong upload token" in str(exc)
        else:
            raise AssertionError("nobody stored it: the caller must hear of it")
    finally:
        await sink.close()
        await runner.cleanup()


def test_a_replica_made_public_a_moment_later_is_behind_and_copying_makes_them_one():
    early, late = Dvr(window_seconds=60), Dvr(window_seconds=60)
    for d in (early, late):
        d.set_public(False, 0.0, T0)
    clock = [0.0]
    tx = LLTranscoder(Tee(early, late), clock=clock)
    tx.run_for(12)  # the backstage preview on both
    early.set_public(True, clock[0], T0)
    tx.run_for(6)  # a segment begins: public on the early one only
    late.set_public(True, clock[0], T0)
    tx.run_for(10)
    assert renders(early)[1] != renders(late)[1]  # the viewers' numbering differs
    assert behind(late.recent(), early.recent()) and behind(early.recent(), late.recent()) is None
    again = copied(early, clock[0])
    assert renders(again) == renders(early)
    assert behind(again.recent(), early.recent()) is None and behind(early.recent(), again.recent()) is None


def test_a_replica_that_missed_an_upload_is_behind():
    full, missed = Dvr(window_seconds=60), Dvr(window_seconds=60)
    tx = LLTranscoder(Tee(full, missed))
    tx.run_for(8)
    tx.dvr = full  # one part (so its segment) reaches one replica only
    tx.part()
    tx.dvr = Tee(full, missed)
    tx.run_for(12)
    assert behind(missed.recent(), full.recent()) and behind(full.recent(), missed.recent()) is None
    assert behind(full.recent(), full.recent()) is None
