"""An HLS VOD playlist over one recorded part, read from the part's own MP4 boxes. Pure.

A part is fragmented MP4 (``command.MOVFLAGS``): ``ftyp`` + an empty ``moov`` (the codecs), then
``moof`` + ``mdat`` pairs (a fragment at every keyframe and at least every half second). HLS plays
such a file as it is, without copying or re-muxing it: ``EXT-X-MAP`` names the header bytes (the
init section) and each segment is an ``EXT-X-BYTERANGE`` of consecutive fragments. Segments start
at a keyframe fragment and last about ``TARGET_SECONDS`` (fragments at least every half second
keep them close to it), so a player seeks to a segment boundary and starts decoding at once.

The playlist names the part by a relative URI: it plays wherever the part and the playlist sit
side by side (the recorder's HTTP server, a bucket, a CDN in front of it).

What a fragment lasts comes from the fragment itself (``trun`` sample durations, or the ``tfhd``
/ ``trex`` defaults), in the timescale of its track (``mdhd``); the video track rules when there
is one (its keyframes are where a player can start), the first track otherwise. A fragment cut
short by a killed ffmpeg (its ``mdat`` runs past the end of the file) and everything after it is
left out: the playlist only ever names bytes that are there.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Optional

from onair import endpoints
from onair.agent.hls import extinf_tag, map_tag, target_duration_for
from onair.agent.mp4box import boxes, child, children, file_boxes

TARGET_SECONDS = 4.0
# trun/tfhd/trex sample flags: sample_is_non_sync_sample.
NON_SYNC_SAMPLE = 0x00010000


class NotFragmentedMp4(ValueError):
    """The file is no fragmented MP4 with media (no moov, or no complete fragment)."""


@dataclass(frozen=True)
class Fragment:
    offset: int
    length: int  # moof and the mdat(s) that follow it
    duration: float
    keyframe: bool


@dataclass(frozen=True)
class Segment:
    offset: int
    length: int
    duration: float
    keyframe: bool


@dataclass(frozen=True)
class VodIndex:
    init_length: int  # ftyp + moov: bytes 0 .. init_length-1
    segments: list[Segment]

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)


@dataclass
class Track:
    track_id: int
    timescale: int
    handler: bytes
    default_duration: int = 0
    default_flags: int = 0


def read_tracks(moov: bytes) -> dict[int, Track]:
    """track_id -> Track from the bytes of a ``moov`` box (header included)."""
    root = next(boxes(moov), None)
    if root is None or root.kind != b"moov":
        raise NotFragmentedMp4("no moov box")
    tracks: dict[int, Track] = {}
    for trak in children(moov, root, b"trak"):
        tkhd, mdia = child(moov, trak, b"tkhd"), child(moov, trak, b"mdia")
        if tkhd is None or mdia is None:
            continue
        version = moov[tkhd.body]
        track_id = struct.unpack_from(">I", moov, tkhd.body + (20 if version == 1 else 12))[0]
        mdhd, hdlr = child(moov, mdia, b"mdhd"), child(moov, mdia, b"hdlr")
        if mdhd is None:
            continue
        version = moov[mdhd.body]
        timescale = struct.unpack_from(">I", moov, mdhd.body + (20 if version == 1 else 12))[0]
        handler = moov[hdlr.body + 8 : hdlr.body + 12] if hdlr is not None else b""
        tracks[track_id] = Track(track_id, timescale or 1, handler)
    mvex = child(moov, root, b"mvex")
    for trex in children(moov, mvex, b"trex") if mvex is not None else ():
        track_id, _index, duration, _size, flags = struct.unpack_from(">IIIII", moov, trex.body + 4)
        if track_id in tracks:
            tracks[track_id].default_duration, tracks[track_id].default_flags = duration, flags
    if not tracks:
        raise NotFragmentedMp4("the moov box describes no track")
    return tracks


def reference_track(tracks: dict[int, Track]) -> Track:
    return next((t for t in tracks.values() if t.handler == b"vide"), next(iter(tracks.values())))


def read_fragment(moof: bytes, tracks: dict[int, Track], reference: Track) -> Optional[tuple[float, bool]]:
    """(seconds, starts with a sync sample) of the reference track in the bytes of one ``moof``;
    None when the fragment holds no sample of it."""
    root = next(boxes(moof), None)
    if root is None:
        return None
    for traf in children(moof, root, b"traf"):
        tfhd = child(moof, traf, b"tfhd")
        if tfhd is None:
            continue
        flags = int.from_bytes(moof[tfhd.body + 1 : tfhd.body + 4], "big")
        track_id = struct.unpack_from(">I", moof, tfhd.body + 4)[0]
        if track_id != reference.track_id:
            continue
        at = tfhd.body + 8
        at += 8 if flags & 0x01 else 0  # base_data_offset
        at += 4 if flags & 0x02 else 0  # sample_description_index
        default_duration, default_flags = reference.default_duration, reference.default_flags
        if flags & 0x08:
            default_duration = struct.unpack_from(">I", moof, at)[0]
            at += 4
        at += 4 if flags & 0x10 else 0  # default_sample_size
        if flags & 0x20:
            default_flags = struct.unpack_from(">I", moof, at)[0]
        total, first_flags, samples = 0, None, 0
        for trun in children(moof, traf, b"trun"):
            tflags = int.from_bytes(moof[trun.body + 1 : trun.body + 4], "big")
            count = struct.unpack_from(">I", moof, trun.body + 4)[0]
            at = trun.body + 8 + (4 if tflags & 0x01 else 0)
            run_first = None
            if tflags & 0x04:
                run_first = struct.unpack_from(">I", moof, at)[0]
                at += 4
            per_sample = 4 * bin(tflags & 0xF00).count("1")
            for index in range(count):
                entry = at + index * per_sample
                duration = default_duration
                if tflags & 0x100:
                    duration = struct.unpack_from(">I", moof, entry)[0]
                total += duration
                if samples == 0 and index == 0:
                    if run_first is not None:
                        first_flags = run_first
                    elif tflags & 0x400:
                        flag_at = entry + (4 if tflags & 0x100 else 0) + (4 if tflags & 0x200 else 0)
                        first_flags = struct.unpack_from(">I", moof, flag_at)[0]
                    else:
                        first_flags = default_flags
            samples += count
        if samples == 0:
            return None
        keyframe = reference.handler != b"vide" or not ((first_flags or 0) & NON_SYNC_SAMPLE)
        return total / reference.timescale, keyframe
    return None


def index_fragmented_mp4(handle: BinaryIO, file_size: int, target_seconds: float = TARGET_SECONDS) -> VodIndex:
    """The init section and the segments of an open fragmented MP4 part."""
    tracks: Optional[dict[int, Track]] = None
    reference: Optional[Track] = None
    init_length: Optional[int] = None
    fragments: list[Fragment] = []
    current: Optional[tuple[int, float, bool]] = None  # offset, duration, keyframe of the open fragment
    current_end = 0

    def close() -> None:
        if current is not None and current_end > current[0]:
            fragments.append(Fragment(current[0], current_end - current[0], current[1], current[2]))

    for box in file_boxes(handle, file_size):
        if box.end > file_size:
            break  # cut short: a killed ffmpeg's last fragment
        if box.kind == b"moov":
            handle.seek(box.offset)
            tracks = read_tracks(handle.read(box.size))
            reference = reference_track(tracks)
        elif box.kind == b"moof":
            if tracks is None or reference is None:
                raise NotFragmentedMp4("a moof box before the moov box")
            if init_length is None:
                init_length = box.offset
            close()
            current, current_end = None, 0
            handle.seek(box.offset)
            read = read_fragment(handle.read(box.size), tracks, reference)
            if read is not None:
                current = (box.offset, read[0], read[1])
        elif box.kind == b"mdat" and current is not None:
            current_end = box.end
    close()
    if tracks is None or init_length is None or not fragments:
        raise NotFragmentedMp4("no complete fragment (moof + mdat) after a moov box")
    return VodIndex(init_length, group_fragments(fragments, target_seconds))


def group_fragments(fragments: list[Fragment], target_seconds: float = TARGET_SECONDS) -> list[Segment]:
    """Consecutive fragments as segments of about ``target_seconds``, each starting at a keyframe
    fragment (the first one starts wherever the file does)."""
    segments: list[Segment] = []
    start: Optional[Fragment] = None
    end, duration = 0, 0.0
    for fragment in fragments:
        contiguous = start is not None and fragment.offset == end
        if start is not None and (not contiguous or (fragment.keyframe and duration >= target_seconds)):
            segments.append(Segment(start.offset, end - start.offset, duration, start.keyframe))
            start = None
        if start is None:
            start, duration = fragment, 0.0
        end = fragment.offset + fragment.length
        duration += fragment.duration
    if start is not None:
        segments.append(Segment(start.offset, end - start.offset, duration, start.keyframe))
    return segments


def hls_vod_playlist(index: VodIndex, uri: str) -> str:
    """The playlist (``#EXT-X-PLAYLIST-TYPE:VOD``) of one part, naming it by ``uri`` (relative)."""
    target = target_duration_for(max(s.duration for s in index.segments))
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    if all(s.keyframe for s in index.segments):
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    lines.append(map_tag(uri, byterange=f"{index.init_length}@0"))
    for segment in index.segments:
        lines += [extinf_tag(segment.duration, decimals=3), f"#EXT-X-BYTERANGE:{segment.length}@{segment.offset}", uri]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def playlist_name(part_file: str) -> str:
    """``<part>.m3u8`` for ``<part>.mp4``: side by side, on the volume's HTTP server or in the bucket."""
    return endpoints.vod_playlist_name(part_file)


def part_of_playlist(playlist: str) -> Optional[str]:
    """``<part>.mp4`` for ``<part>.m3u8`` (the inverse of ``playlist_name``); None for another name."""
    return f"{playlist.removesuffix('.m3u8')}.mp4" if playlist.endswith(".m3u8") else None
