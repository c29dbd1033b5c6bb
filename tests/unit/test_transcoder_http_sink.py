"""HttpSink against a real (in-process) HTTP server shaped like the origin's upload API."""

from __future__ import annotations

from aiohttp import web

from onair.agent.transcoder.sinks import HttpSink, SinkError
from tests.fixtures.media import free_port


async def _server(handler):
    app = web.Application()
    app.router.add_route("*", "/upload/{path:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/upload"


async def test_put_and_delete_with_bearer_token_over_one_kept_alive_connection():
    seen = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            (
                request.method,
                request.match_info["path"],
                request.headers.get("Authorization"),
                request.headers.get("Content-Type"),
                await request.read(),
                request.transport.get_extra_info("peername"),
            )
        )
        return web.Response(status=201 if request.method == "PUT" else 204)

    runner, url = await _server(handler)
    sink = HttpSink(url, token=lambda: "s3cret")
    try:
        await sink.put("hls/cmaf/720p/r1_000001.m4s", b"seg")
        await sink.put("hls/cmaf/720p/index.m3u8", b"#EXTM3U\n")
        await sink.delete("hls/cmaf/720p/r1_000001.m4s")
    finally:
        await sink.close()
        await runner.cleanup()
    assert [(m, p, a, c, b) for m, p, a, c, b, _ in seen] == [
        ("PUT", "hls/cmaf/720p/r1_000001.m4s", "Bearer s3cret", "video/iso.segment", b"seg"),
        ("PUT", "hls/cmaf/720p/index.m3u8", "Bearer s3cret", "application/vnd.apple.mpegurl", b"#EXTM3U\n"),
        ("DELETE", "hls/cmaf/720p/r1_000001.m4s", "Bearer s3cret", "video/iso.segment", b""),
    ]
    assert len({peer for *_, peer in seen}) == 1, "every request should reuse one connection"


async def test_transient_errors_are_retried_and_refusals_are_not():
    calls = {"flaky": 0, "denied": 0}

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["path"]
        calls[name] += 1
        if name == "flaky" and calls[name] < 3:
            return web.Response(status=503)
        if name == "denied":
            return web.Response(status=401)
        return web.Response(status=201)

    runner, url = await _server(handler)
    sink = HttpSink(url, token=lambda: None)
    try:
        await sink.put("flaky", b"x")
        try:
            await sink.put("denied", b"x")
        except SinkError as exc:
            assert "HTTP 401" in str(exc) and "s3cret" not in str(exc)
        else:
            raise AssertionError("a refused upload must raise")
    finally:
        await sink.close()
        await runner.cleanup()
    assert calls == {"flaky": 3, "denied": 1}


async def test_after_the_shutdown_deadline_nothing_is_retried_or_sent():
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        calls["n"] += 1
        return web.Response(status=503)

    runner, url = await _server(handler)
    sink = HttpSink(url, token=lambda: None)
    try:
        # Less time left than the first retry delay: one attempt, no retry.
        sink.give_up_after(0.1)
        try:
            await sink.put("hls/cmaf/720p/index.m3u8", b"#EXTM3U\n")
        except SinkError as exc:
            assert "HTTP 503; not retried, the agent is stopping" in str(exc)
        else:
            raise AssertionError("an unanswered upload must raise")
        assert calls["n"] == 1
        # Past the deadline: nothing goes out at all.
        sink.give_up_after(0)
        try:
            await sink.put("hls/cmaf/720p/index.m3u8", b"#EXTM3U\n")
        except SinkError as exc:
            assert "not sent, the agent is stopping" in str(exc)
        else:
            raise AssertionError("an upload after the deadline must raise")
        assert calls["n"] == 1
    finally:
        await sink.close()
        await runner.cleanup()


async def test_a_busy_origin_gets_more_tries_after_its_retry_after_and_its_reason_is_kept():
    calls = {"busy": 0, "full": 0}

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["path"]
        calls[name] += 1
        if name == "busy" and calls[name] <= 4:  # past the short schedule: only a busy answer earns more
            return web.json_response(
                {"error": "the origin is out of file descriptors"}, status=503, headers={"Retry-After": "0.1"}
            )
        if name == "full":
            return web.json_response(
                {"error": "the origin's volume is full"}, status=507, headers={"Retry-After": "1e999"}
            )
        return web.Response(status=201)

    runner, url = await _server(handler)
    sink = HttpSink(url, token=lambda: None)
    try:
        await sink.put("busy", b"x")
        try:
            await sink.put("full", b"x")
        except SinkError as exc:
            assert "HTTP 507: the origin's volume is full" in str(exc)
        else:
            raise AssertionError("an upload never stored must raise")
    finally:
        await sink.close()
        await runner.cleanup()
    assert calls == {"busy": 5, "full": 6}
