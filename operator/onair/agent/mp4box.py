"""ISO base media file format (MP4) boxes: the one reader of box headers for every role.

The transcoder reads CMAF fragments (which LL-HLS part starts with a keyframe, where a segment
starts in time), the recorder reads its parts (whether one holds media, the byte ranges of a VOD
playlist). What a box means is theirs; walking the boxes is here. Hand-written because all of
them need only box headers and a few fields, at the speed of a packet loop, and no maintained
Python library reads fragments as bytes arrive (pymp4 and construct-based parsers build whole
object trees).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional


@dataclass(frozen=True)
class Box:
    kind: bytes
    offset: int  # of the header
    size: int  # header included
    header: int  # 8, or 16 with a 64-bit size

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def body(self) -> int:
        return self.offset + self.header


def _header(raw: bytes, offset: int, available: int) -> Optional[tuple[bytes, int, int]]:
    """(kind, size, header length) of the box header at ``raw[0:]``; ``available``: bytes from its
    start to the end of what holds it (a size of 0 means "to the end")."""
    size, kind = struct.unpack_from(">I4s", raw, 0)
    header = 8
    if size == 1:
        if len(raw) < 16:
            return None
        size, header = struct.unpack_from(">Q", raw, 8)[0], 16
    elif size == 0:
        size = available
    if size < header:
        return None
    return kind, size, header


def boxes(data: bytes, start: int = 0, end: Optional[int] = None) -> Iterator[Box]:
    """The boxes in ``data[start:end]``; stops at one that is cut short or malformed."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        parsed = _header(data[offset : offset + 16], offset, end - offset)
        if parsed is None or offset + parsed[1] > end:
            return
        kind, size, header = parsed
        yield Box(kind, offset, size, header)
        offset += size


def child(data: bytes, parent: Box, kind: bytes) -> Optional[Box]:
    return next((b for b in boxes(data, parent.body, parent.end) if b.kind == kind), None)


def children(data: bytes, parent: Box, kind: bytes) -> list[Box]:
    return [b for b in boxes(data, parent.body, parent.end) if b.kind == kind]


def file_boxes(handle: BinaryIO, file_size: int) -> Iterator[Box]:
    """Top-level boxes of an open file, reading only their headers. A box that runs past the end
    of the file (a fragment cut short by a killed writer) is still yielded: the caller checks
    ``end`` against the file size."""
    offset = 0
    while offset + 8 <= file_size:
        handle.seek(offset)
        parsed = _header(handle.read(16), offset, file_size - offset)
        if parsed is None:
            return
        kind, size, header = parsed
        yield Box(kind, offset, size, header)
        offset += size
