"""DASH segments served while they are still being uploaded (LL-DASH, HTTP chunked transfer).

The transcoder streams each low-latency DASH segment to the origin in one chunked PUT, CMAF chunk
by chunk, as ffmpeg writes it. While that upload runs, its bytes so far live here; a viewer asking
for the segment gets them at once and then each new chunk as it arrives, in one chunked response
that ends when the upload completes. The finished response is exactly the finished segment, so it
carries the same cache headers (a CDN may keep it). An upload that fails mid-way ends its readers'
connections without the terminating chunk: no cache may take a truncated segment for a whole one.
"""

from __future__ import annotations

import asyncio
import re
from typing import Callable, Optional

from aiohttp import web

# A segment name as the transcoder's dash muxer writes it: <run>_<representation>_<number>.m4s.
_NUMBERED = re.compile(r"^(?P<prefix>.+_)(?P<number>\d+)(?P<ext>\.m4s)$")


class GrowingFile:
    """The bytes of one upload in progress, and a way to wait for more."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.complete = False
        self.failed = False
        self._changed = asyncio.Event()

    def append(self, chunk: bytes) -> None:
        self.data += chunk
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self) -> None:
        self.failed = True
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def changed(self) -> None:
        await self._changed.wait()


def previous_segment(path: str) -> Optional[str]:
    """The segment before ``path`` in its representation (same number width), or None."""
    directory, _, name = path.rpartition("/")
    match = _NUMBERED.match(name)
    if match is None or int(match["number"]) == 0:
        return None
    number = match["number"]
    return f"{directory}/{match['prefix']}{int(number) - 1:0{len(number)}d}{match['ext']}"


async def serve(
    request: web.Request,
    growing: GrowingFile,
    headers: dict[str, str],
    sent_bytes: Callable[[int], None] = lambda n: None,
) -> web.StreamResponse:
    """The upload's bytes as they arrive, in one chunked response that ends with the upload
    (``sent_bytes``: told each chunk's size, as no Content-Length says it)."""
    if request.method == "HEAD":
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent = 0
    while True:
        if sent < len(growing.data):
            chunk = bytes(growing.data[sent:])
            sent += len(chunk)
            await response.write(chunk)
            sent_bytes(len(chunk))
            continue
        if growing.complete:
            break
        if growing.failed:
            if request.transport is not None:
                request.transport.abort()  # no last chunk: the response is visibly incomplete
            return response
        await growing.changed()
    await response.write_eof()
    return response
