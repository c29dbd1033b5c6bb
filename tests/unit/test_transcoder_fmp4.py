"""Which CMAF fragments start with a keyframe, read from hand-made boxes (ISO/IEC 14496-12)."""

from __future__ import annotations

import struct

from onair.agent.transcoder.fmp4 import NON_SYNC, InitInfo, read_init, starts_independent
from onair.agent.transcoder.packager import _next_part


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(kind: bytes, flags: int, payload: bytes, version: int = 0) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def trak(track_id: int, handler: bytes) -> bytes:
    tkhd = full(b"tkhd", 3, struct.pack(">IIII", 0, 0, track_id, 0) + bytes(64))
    hdlr = full(b"hdlr", 0, struct.pack(">I", 0) + handler + bytes(12) + b"\0")
    return box(b"trak", tkhd + box(b"mdia", hdlr))


def init_segment(trex_flags: int = 0) -> bytes:
    trex = lambda t: full(b"trex", 0, struct.pack(">IIIII", t, 1, 0, 0, trex_flags))  # noqa: E731
    return box(b"ftyp", b"iso6") + box(b"moov", trak(1, b"vide") + trak(2, b"soun") + box(b"mvex", trex(1) + trex(2)))


def traf(
    track_id: int, first_flags: int | None = None, sample_flags: int | None = None, default_flags: int | None = None
) -> bytes:
    tfhd = full(
        b"tfhd",
        0x20000 | (0x20 if default_flags is not None else 0),
        struct.pack(">I", track_id) + (struct.pack(">I", default_flags) if default_flags is not None else b""),
    )
    if first_flags is not None:
        trun = full(b"trun", 0x1 | 0x4, struct.pack(">IiI", 1, 0, first_flags))
    elif sample_flags is not None:
        trun = full(b"trun", 0x1 | 0x100 | 0x200 | 0x400, struct.pack(">IiIII", 1, 0, 3000, 100, sample_flags))
    else:
        trun = full(b"trun", 0x1, struct.pack(">Ii", 1, 0))
    return box(b"traf", tfhd + trun)


def fragment(*trafs: bytes) -> bytes:
    return box(b"moof", full(b"mfhd", 0, struct.pack(">I", 1)) + b"".join(trafs)) + box(b"mdat", b"x" * 10)


def test_read_init_finds_the_video_track_and_defaults():
    info = read_init(init_segment(trex_flags=NON_SYNC))
    assert info.video_tracks == {1} and info.tracks == {1, 2} and info.default_flags == {1: NON_SYNC, 2: NON_SYNC}


def test_the_first_video_sample_decides_from_trun_tfhd_or_trex():
    info = read_init(init_segment(trex_flags=NON_SYNC))
    audio = traf(2, first_flags=NON_SYNC)  # audio flags never matter
    assert starts_independent(fragment(traf(1, first_flags=0x02000000), audio), info)
    assert not starts_independent(fragment(traf(1, first_flags=NON_SYNC | 0x01000000), audio), info)
    assert starts_independent(fragment(traf(1, sample_flags=0)), info)
    assert not starts_independent(fragment(traf(1, sample_flags=NON_SYNC)), info)
    assert starts_independent(fragment(traf(1, default_flags=0)), info)
    assert not starts_independent(fragment(traf(1)), info)  # trex says non-sync
    assert starts_independent(fragment(traf(1)), read_init(init_segment(trex_flags=0)))


def test_garbage_and_truncation_are_never_independent():
    info = read_init(init_segment())
    good = fragment(traf(1, first_flags=0))
    assert not starts_independent(b"", info)
    assert not starts_independent(good[:30], info)
    assert not starts_independent(box(b"mdat", b"x"), info)
    assert read_init(b"\x00\x00\x00\x01moov") == InitInfo()


def test_audio_only_fragments_are_independent_and_an_unread_init_judges_every_track():
    audio_only = read_init(box(b"ftyp", b"iso6") + box(b"moov", trak(2, b"soun")))
    assert audio_only.tracks == {2} and not audio_only.video_tracks
    assert starts_independent(fragment(traf(2, first_flags=NON_SYNC)), audio_only)
    assert not starts_independent(fragment(traf(2, first_flags=NON_SYNC)), InitInfo())
    assert starts_independent(fragment(traf(1, first_flags=0), traf(2, first_flags=0)), InitInfo())


def test_next_part_name_follows_ffmpegs_numbering():
    assert _next_part("20260101T000000-abcd_000041.m4s") == "20260101T000000-abcd_000042.m4s"
    assert _next_part("r_999999.m4s") == "r_1000000.m4s"
    assert _next_part("init.mp4") is None
