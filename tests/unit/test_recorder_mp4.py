import struct

from onair.agent.recorder.mp4 import holds_media


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def large_box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


HEADERS = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso6mp41") + box(b"moov", box(b"mvhd", bytes(100)))


def test_a_file_a_run_left_without_media_holds_none(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    headers_only = tmp_path / "headers.mp4"
    headers_only.write_bytes(HEADERS)
    assert not holds_media(empty)
    assert not holds_media(headers_only)
    assert not holds_media(tmp_path / "missing.mp4")


def test_fragments_after_the_headers_are_media(tmp_path):
    fragmented = tmp_path / "fragmented.mp4"
    fragmented.write_bytes(HEADERS + box(b"moof", box(b"mfhd", bytes(8))) + box(b"mdat", bytes(64)))
    with_large_box = tmp_path / "large.mp4"
    with_large_box.write_bytes(box(b"ftyp", bytes(8)) + large_box(b"free", bytes(32)) + box(b"mdat", bytes(16)))
    assert holds_media(fragmented)
    assert holds_media(with_large_box)


def test_a_corrupt_or_truncated_header_is_no_media(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(struct.pack(">I4s", 4, b"ftyp") + box(b"mdat"))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(HEADERS[:20])
    assert not holds_media(corrupt)
    assert not holds_media(truncated)
