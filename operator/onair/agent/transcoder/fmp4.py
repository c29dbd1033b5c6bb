"""Whether a CMAF fragment (``moof`` + ``mdat``) starts with a keyframe, read from its boxes.

Low-latency HLS marks a partial segment ``INDEPENDENT=YES`` when a player can start decoding
there, and a segment must begin with such a part. ffmpeg cuts parts on a time grid, so which of
them starts with a keyframe is read from the fragment itself, not assumed: the first sample's
flags of each video track (ISO/IEC 14496-12 8.8.3.1: ``sample_is_non_sync_sample``), taken from
the ``trun``, else the ``tfhd`` default, else the init segment's ``trex`` default.

Pure and defensive: any truncated or unexpected box makes the answer "not independent".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterator, Optional

from onair.agent.mp4box import boxes

NON_SYNC = 0x00010000
# tfhd flags
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
# trun flags
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400


def _spans(data: bytes, start: int = 0, end: Optional[int] = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes in ``data[start:end]``."""
    for box in boxes(data, start, end):
        yield box.kind, box.body, box.end


def _child(data: bytes, start: int, end: int, kind: bytes) -> Optional[tuple[int, int]]:
    found = next((b for b in boxes(data, start, end) if b.kind == kind), None)
    return (found.body, found.end) if found is not None else None


@dataclass(frozen=True)
class InitInfo:
    video_tracks: frozenset[int] = frozenset()
    default_flags: dict[int, int] = field(default_factory=dict)  # trex default_sample_flags per track
    tracks: frozenset[int] = frozenset()  # empty: the init was not read, every track is judged
    timescales: dict[int, int] = field(default_factory=dict)  # mdhd timescale per track


def read_init(data: bytes) -> InitInfo:
    """The video track ids and ``trex`` defaults of an init segment (``ftyp`` + ``moov``)."""
    moov = _child(data, 0, len(data), b"moov")
    if moov is None:
        return InitInfo()
    video: set[int] = set()
    tracks: set[int] = set()
    defaults: dict[int, int] = {}
    timescales: dict[int, int] = {}
    for kind, s, e in _spans(data, *moov):
        if kind == b"trak":
            tkhd = _child(data, s, e, b"tkhd")
            mdia = _child(data, s, e, b"mdia")
            hdlr = _child(data, *mdia, b"hdlr") if mdia else None
            mdhd = _child(data, *mdia, b"mdhd") if mdia else None
            if tkhd is None or hdlr is None or hdlr[1] - hdlr[0] < 12:
                continue
            version = data[tkhd[0]]
            id_at = tkhd[0] + (20 if version == 1 else 12)
            if id_at + 4 > tkhd[1]:
                continue
            track_id = struct.unpack_from(">I", data, id_at)[0]
            tracks.add(track_id)
            if mdhd is not None:
                scale_at = mdhd[0] + (20 if data[mdhd[0]] == 1 else 12)
                if scale_at + 4 <= mdhd[1]:
                    timescales[track_id] = struct.unpack_from(">I", data, scale_at)[0]
            if data[hdlr[0] + 8 : hdlr[0] + 12] == b"vide":
                video.add(track_id)
        elif kind == b"mvex":
            for k, ts, te in _spans(data, s, e):
                if k == b"trex" and te - ts >= 24:
                    track_id = struct.unpack_from(">I", data, ts + 4)[0]
                    defaults[track_id] = struct.unpack_from(">I", data, ts + 20)[0]
    return InitInfo(frozenset(video), defaults, frozenset(tracks), timescales)


def start_seconds(fragment: bytes, init: InitInfo) -> Optional[float]:
    """Decode time of the first ``moof``'s video track (``tfdt``), in seconds; None when unreadable.

    Only the boxes before ``mdat`` are needed: the head of a segment file will do.
    """
    moof = _child(fragment, 0, len(fragment), b"moof")
    if moof is None:
        return None
    found: Optional[float] = None
    for kind, s, e in _spans(fragment, *moof):
        if kind != b"traf":
            continue
        tfhd = _child(fragment, s, e, b"tfhd")
        tfdt = _child(fragment, s, e, b"tfdt")
        if tfhd is None or tfdt is None or tfhd[1] - tfhd[0] < 8 or tfdt[1] - tfdt[0] < 8:
            continue
        track_id = struct.unpack_from(">I", fragment, tfhd[0] + 4)[0]
        scale = init.timescales.get(track_id)
        if not scale:
            continue
        if fragment[tfdt[0]] == 1:
            if tfdt[1] - tfdt[0] < 12:
                continue
            decode = struct.unpack_from(">Q", fragment, tfdt[0] + 4)[0]
        else:
            decode = struct.unpack_from(">I", fragment, tfdt[0] + 4)[0]
        seconds = decode / scale
        if track_id in init.video_tracks:
            return seconds
        if found is None:
            found = seconds
    return None if init.video_tracks else found


def starts_independent(fragment: bytes, init: InitInfo) -> bool:
    """True when every video track of the first ``moof`` starts with a sync sample.

    A fragment of an audio-only rendition is independent: every audio frame is. Without a readable
    init every track is judged.
    """
    moof = _child(fragment, 0, len(fragment), b"moof")
    if moof is None:
        return False
    judged = False
    for kind, s, e in _spans(fragment, *moof):
        if kind != b"traf":
            continue
        flags = _first_sample_flags(fragment, s, e, init)
        if flags is None:
            return False
        track_id, sample_flags = flags
        if init.tracks and track_id not in init.video_tracks:
            continue
        judged = True
        if sample_flags is None or sample_flags & NON_SYNC:
            return False
    return judged or bool(init.tracks and not init.video_tracks)


def _first_sample_flags(data: bytes, start: int, end: int, init: InitInfo) -> Optional[tuple[int, Optional[int]]]:
    tfhd = _child(data, start, end, b"tfhd")
    if tfhd is None or tfhd[1] - tfhd[0] < 8:
        return None
    tf_flags = struct.unpack_from(">I", data, tfhd[0])[0] & 0xFFFFFF
    track_id = struct.unpack_from(">I", data, tfhd[0] + 4)[0]
    at = tfhd[0] + 8
    for bit, size in (
        (_TFHD_BASE_DATA_OFFSET, 8),
        (_TFHD_SAMPLE_DESCRIPTION_INDEX, 4),
        (_TFHD_DEFAULT_DURATION, 4),
        (_TFHD_DEFAULT_SIZE, 4),
    ):
        if tf_flags & bit:
            at += size
    default = init.default_flags.get(track_id)
    if tf_flags & _TFHD_DEFAULT_FLAGS:
        if at + 4 > tfhd[1]:
            return None
        default = struct.unpack_from(">I", data, at)[0]
    trun = _child(data, start, end, b"trun")
    if trun is None or trun[1] - trun[0] < 8:
        return track_id, None
    tr_flags = struct.unpack_from(">I", data, trun[0])[0] & 0xFFFFFF
    count = struct.unpack_from(">I", data, trun[0] + 4)[0]
    if count == 0:
        return track_id, None
    at = trun[0] + 8 + (4 if tr_flags & _TRUN_DATA_OFFSET else 0)
    if tr_flags & _TRUN_FIRST_SAMPLE_FLAGS:
        return track_id, (struct.unpack_from(">I", data, at)[0] if at + 4 <= trun[1] else None)
    if tr_flags & _TRUN_FLAGS:
        at += 4 * bool(tr_flags & _TRUN_DURATION) + 4 * bool(tr_flags & _TRUN_SIZE)
        return track_id, (struct.unpack_from(">I", data, at)[0] if at + 4 <= trun[1] else None)
    return track_id, default
