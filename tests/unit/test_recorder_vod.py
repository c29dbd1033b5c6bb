"""The HLS VOD playlist of a recorded part (onair.agent.recorder.vod): boxes read from a synthetic
fragmented MP4, fragments grouped into keyframe-aligned segments, the playlist text. Pure."""

from __future__ import annotations

import io
import struct

import pytest

from onair.agent.recorder import vod


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def trak(track_id: int, timescale: int, handler: bytes) -> bytes:
    tkhd = full(b"tkhd", 0, 3, struct.pack(">III", 0, 0, track_id) + bytes(68))
    mdhd = full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, timescale, 0) + bytes(4))
    hdlr = full(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler) + bytes(12) + b"\0")
    return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr))


def moov(default_duration: int = 1000) -> bytes:
    trex_video = full(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, default_duration, 0, 0))
    trex_audio = full(b"trex", 0, 0, struct.pack(">IIIII", 2, 1, 1024, 0, 0))
    return box(b"moov", trak(1, 15000, b"vide") + trak(2, 48000, b"soun") + box(b"mvex", trex_video + trex_audio))


def moof(samples: int, keyframe: bool, per_sample_duration: int | None = None) -> bytes:
    """A fragment of ``samples`` video samples (1000/15000 s each unless given) and 10 audio samples."""
    tfhd_video = full(b"tfhd", 0, 0x020000, struct.pack(">I", 1))  # default-base-is-moof
    first_flags = 0x02000000 if keyframe else 0x01010000
    if per_sample_duration is None:
        trun_video = full(b"trun", 0, 0x001 | 0x004, struct.pack(">IiI", samples, 0, first_flags))
    else:
        entries = b"".join(struct.pack(">I", per_sample_duration) for _ in range(samples))
        trun_video = full(b"trun", 0, 0x001 | 0x004 | 0x100, struct.pack(">IiI", samples, 0, first_flags) + entries)
    audio = box(
        b"traf", full(b"tfhd", 0, 0x020000, struct.pack(">I", 2)) + full(b"trun", 0, 0x001, struct.pack(">Ii", 10, 0))
    )
    return box(b"moof", full(b"mfhd", 0, 0, struct.pack(">I", 1)) + box(b"traf", tfhd_video + trun_video) + audio)


def fragment(samples: int, keyframe: bool, size: int = 500, **kw) -> bytes:
    return moof(samples, keyframe, **kw) + box(b"mdat", bytes(size))


def index(data: bytes, target: float = vod.TARGET_SECONDS) -> vod.VodIndex:
    return vod.index_fragmented_mp4(io.BytesIO(data), len(data), target)


HEADER = box(b"ftyp", b"isom\0\0\2\0isomiso6") + moov()


def test_fragments_become_keyframe_aligned_segments_of_about_the_target():
    # 1 s keyframe interval, a fragment every 0.5 s (7.5 samples -> 8 and 7 at 15 fps).
    body = b"".join(fragment(8 if i % 2 == 0 else 7, keyframe=i % 2 == 0) for i in range(20))
    idx = index(HEADER + body, target=4.0)
    assert idx.init_length == len(HEADER)
    assert [round(s.duration, 3) for s in idx.segments] == [4.0, 4.0, 2.0]
    assert all(s.keyframe for s in idx.segments)
    # Contiguous byte ranges covering every fragment, nothing more.
    assert idx.segments[0].offset == len(HEADER)
    for before, after in zip(idx.segments, idx.segments[1:]):
        assert before.offset + before.length == after.offset
    assert idx.segments[-1].offset + idx.segments[-1].length == len(HEADER) + len(body)
    assert idx.duration == pytest.approx(10.0)


def test_sample_durations_in_the_trun_win_over_the_defaults():
    idx = index(HEADER + fragment(10, True, per_sample_duration=3000), target=1)
    assert idx.segments[0].duration == pytest.approx(2.0)  # 10 x 3000 / 15000


def test_a_fragment_cut_short_by_a_kill_is_left_out():
    whole = HEADER + fragment(15, True) + fragment(15, True)
    idx = index(whole[:-100], target=0.5)
    assert len(idx.segments) == 1 and idx.segments[0].offset + idx.segments[0].length <= len(whole) - 100


def test_a_file_without_media_is_no_vod():
    with pytest.raises(vod.NotFragmentedMp4):
        index(HEADER)
    with pytest.raises(vod.NotFragmentedMp4):
        index(b"")


def test_the_playlist_maps_the_header_and_names_each_segment_by_byte_range():
    body = b"".join(fragment(15, True) for _ in range(3))
    idx = index(HEADER + body, target=1.0)
    text = vod.hls_vod_playlist(idx, "show_part0001.mp4")
    lines = text.splitlines()
    assert lines[:5] == [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:1",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in lines
    assert f'#EXT-X-MAP:URI="show_part0001.mp4",BYTERANGE="{len(HEADER)}@0"' in lines
    assert lines.count("show_part0001.mp4") == 3 and lines[-1] == "#EXT-X-ENDLIST"
    ranges = [line.split(":")[1] for line in lines if line.startswith("#EXT-X-BYTERANGE")]
    assert ranges[0] == f"{idx.segments[0].length}@{len(HEADER)}"
    assert vod.playlist_name("show_part0001.mp4") == "show_part0001.m3u8"


def test_segments_that_start_between_keyframes_drop_the_independent_claim():
    body = fragment(15, False) + fragment(15, True)
    text = vod.hls_vod_playlist(index(HEADER + body, target=0.5), "p.mp4")
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in text


def test_a_playlist_name_leads_back_to_its_part():
    part = "events_keynote_20260714T090005Z_part0001.mp4"
    assert vod.part_of_playlist(vod.playlist_name(part)) == part
    assert vod.part_of_playlist(part) is None and vod.part_of_playlist("x.json") is None


def test_the_target_duration_is_the_longest_segment_rounded_to_the_nearest_second():
    # 2.002 s segments (30 samples of 1001/15000 s): RFC 8216 rounds EXTINF to the nearest integer, so 2.
    body = b"".join(fragment(30, True, per_sample_duration=1001) for _ in range(3))
    text = vod.hls_vod_playlist(index(HEADER + body, target=2.0), "p.mp4")
    assert "#EXTINF:2.002" in text and "#EXT-X-TARGETDURATION:2\n" in text
