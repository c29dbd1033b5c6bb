"""The packager's LL-DASH path against a directory written the way ffmpeg's dash muxer does in
streaming mode (chunks appended to ``<segment>.tmp``, renamed when complete): each segment goes out
as one stream, chunk by chunk while it grows, then the next; a failed stream falls back to the file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator, Optional

from onair.agent.transcoder.packager import Packager
from onair.agent.transcoder.sinks import DirSink, SinkError

RUN = "r1"


class StreamRecorder(DirSink):
    """A directory sink that records what each stream carried, chunk by chunk."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        super().__init__(root)
        self.streams: dict[str, list[bytes]] = {}
        self.fail = fail

    async def put_stream(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        received = self.streams[path] = []
        async for chunk in chunks:
            received.append(chunk)
            if self.fail:
                raise SinkError("origin went away mid-stream")
        await self.put(path, b"".join(received))


async def write_segment(
    dash: Path, name: str, chunks: list[bytes], seen: Optional[dict] = None, sink: Optional[StreamRecorder] = None
) -> None:
    tmp = dash / f"{name}.tmp"
    with open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            await asyncio.sleep(0.1)  # a part's time: the follower sends what is there
            if seen is not None and sink is not None:
                seen.setdefault(name, []).append(sum(map(len, sink.streams.get(f"dash/{name}", []))))
    os.replace(tmp, dash / name)


async def test_segments_are_streamed_chunk_by_chunk_while_written_then_the_next_one(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    sink = StreamRecorder(out)
    packager = Packager(work, sink, kinds=(), dash=True)
    packager.begin_run(RUN, ["180p"], part_seconds=0.2, segment_seconds=1.0)
    dash = work / "dash"
    dash.mkdir(parents=True, exist_ok=True)
    (dash / f"{RUN}_init_0.m4s").write_bytes(b"init")
    segments = {f"{RUN}_0_{n:06d}.m4s": [f"s{n}c{i}".encode() * 100 for i in range(5)] for n in range(1, 4)}
    seen: dict[str, list[int]] = {}
    first = next(iter(segments))
    (dash / f"{first}.tmp").write_bytes(b"")  # what a scan finds: the first segment begun
    await packager.sync()
    for name, chunks in segments.items():
        await write_segment(dash, name, chunks, seen, sink)
        await asyncio.sleep(0.1)
    await packager.sync()
    for name, chunks in segments.items():
        assert (out / "dash" / name).read_bytes() == b"".join(chunks)
        assert len(sink.streams[f"dash/{name}"]) >= 3, "sent as it grew, not at the end"
        # While ffmpeg was still writing, the origin already had some of it.
        assert any(0 < sent < len(b"".join(chunks)) for sent in seen[name])
    assert (out / "dash" / f"{RUN}_init_0.m4s").read_bytes() == b"init"  # not streamed, mirrored
    assert packager.stats.segments.get("dash") == 3


async def test_a_failed_stream_is_published_whole_once_finished(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    sink = StreamRecorder(out, fail=True)
    packager = Packager(work, sink, kinds=(), dash=True)
    packager.begin_run(RUN, ["180p"], part_seconds=0.2, segment_seconds=1.0)
    dash = work / "dash"
    dash.mkdir(parents=True, exist_ok=True)
    name = f"{RUN}_0_000001.m4s"
    (dash / f"{name}.tmp").write_bytes(b"")
    await packager.sync()
    await write_segment(dash, name, [b"a" * 10, b"b" * 10])
    await asyncio.sleep(0.1)
    await packager.sync()
    assert (out / "dash" / name).read_bytes() == b"a" * 10 + b"b" * 10


MPD = b"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-12-06T10:00:10.500Z">
</MPD>"""


def test_the_anchor_moves_back_to_when_first_chunks_really_came_never_forward_at_most_a_segment(tmp_path):
    packager = Packager(tmp_path / "work", DirSink(tmp_path / "out"), kinds=(), dash=True)
    packager.begin_run(RUN, ["180p"], part_seconds=0.2, segment_seconds=1.0)
    written = 1796551210.5  # the MPD's 10:00:10.500Z
    assert packager._anchored(MPD) == MPD  # nothing seen yet
    # Segment 3's first chunk came 2 s + one chunk after a start 0.4 s before ffmpeg's anchor.
    packager._first_chunk(f"dash/{RUN}_0_000003.m4s", written - 0.4 + 2 + 0.2)
    assert b'availabilityStartTime="2026-12-06T10:00:10.100Z"' in packager._anchored(MPD)
    packager._first_chunk(f"dash/{RUN}_0_000004.m4s", written + 3.5)  # a later one: no change
    assert b'availabilityStartTime="2026-12-06T10:00:10.100Z"' in packager._anchored(MPD)
    # A burst (a source faster than real time) cannot take it back more than a segment.
    packager._first_chunk(f"dash/{RUN}_0_000005.m4s", written)
    assert b'availabilityStartTime="2026-12-06T10:00:09.500Z"' in packager._anchored(MPD)
    late = Packager(tmp_path / "w2", DirSink(tmp_path / "o2"), kinds=(), dash=True)
    late.begin_run(RUN, ["180p"], part_seconds=0.2, segment_seconds=1.0)
    late._first_chunk(f"dash/{RUN}_0_000001.m4s", written + 0.5)  # later than ffmpeg says: kept
    assert late._anchored(MPD) == MPD
