"""Just enough of HLS (RFC 8216) to read what the transcoder uploads and to re-serve it.

Our own small parser instead of a library: the origin only needs the segment list of a media
playlist (URI, duration, sequence, discontinuity, EXT-X-MAP, PROGRAM-DATE-TIME, ENDLIST), and for
low-latency HLS (RFC 8216bis) the partial segments (``EXT-X-PART``: those before a segment's URI
are its parts, those after the last one belong to the segment still being written), the part
target and the preload hint; it must never crash on whatever bytes are PUT to it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
_URI_ATTR = re.compile(r'URI="([^"]*)"')


class PlaylistError(ValueError):
    """The uploaded bytes are not a usable playlist (HTTP 400 to the uploader)."""


@dataclass(frozen=True)
class UpstreamPart:
    uri: str
    duration: float
    independent: bool = False


@dataclass(frozen=True)
class UpstreamSegment:
    uri: str
    duration: float
    sequence: int
    discontinuity: bool = False
    map_uri: Optional[str] = None
    program_date_time: Optional[datetime] = None
    byterange: bool = False
    parts: tuple[UpstreamPart, ...] = ()


@dataclass(frozen=True)
class MediaPlaylist:
    target_duration: int
    media_sequence: int = 0
    version: int = 3
    segments: tuple[UpstreamSegment, ...] = field(default_factory=tuple)
    endlist: bool = False
    independent_segments: bool = False
    part_target: Optional[float] = None  # EXT-X-PART-INF: the playlist carries partial segments
    open_parts: tuple[UpstreamPart, ...] = ()  # parts of the segment not finished yet
    preload_hint: Optional[str] = None  # URI of the next part, before it exists
    open_map_uri: Optional[str] = None  # the EXT-X-MAP that applies to the open parts


def attributes(value: str) -> dict[str, str]:
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _ATTR.findall(value)}


def parse_pdt(value: str) -> Optional[datetime]:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_pdt(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_master(text: str) -> bool:
    return "#EXT-X-STREAM-INF" in text


def parse_media_playlist(text: str) -> MediaPlaylist:
    lines = [line.strip() for line in text.replace("\r", "").split("\n")]
    if not lines or lines[0].lstrip("\ufeff") != "#EXTM3U":
        raise PlaylistError("not an HLS playlist (no #EXTM3U header)")
    if is_master(text):
        raise PlaylistError("a master playlist where a media playlist was expected")
    target = None
    sequence = 0
    version = 3
    endlist = independent = False
    segments: list[UpstreamSegment] = []
    duration: Optional[float] = None
    discontinuity = byterange = False
    map_uri: Optional[str] = None
    pdt: Optional[datetime] = None
    next_sequence: Optional[int] = None
    part_target: Optional[float] = None
    parts: list[UpstreamPart] = []
    hint: Optional[str] = None
    for line in lines[1:]:
        if not line:
            continue
        if not line.startswith("#"):
            if duration is None:
                raise PlaylistError(f"segment {line[:80]!r} has no #EXTINF")
            if next_sequence is None:
                next_sequence = sequence
            segments.append(UpstreamSegment(line, duration, next_sequence, discontinuity, map_uri, pdt, byterange,
                                            tuple(parts)))
            next_sequence += 1
            duration, discontinuity, byterange, pdt, parts = None, False, False, None, []
            continue
        tag, _, value = line.partition(":")
        try:
            if tag == "#EXTINF":
                duration = float(value.split(",", 1)[0])
                if not 0 <= duration < 3600:
                    raise PlaylistError(f"implausible segment duration {duration}")
            elif tag == "#EXT-X-TARGETDURATION":
                target = int(float(value))
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                sequence = int(value)
            elif tag == "#EXT-X-VERSION":
                version = int(value)
            elif tag == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif tag == "#EXT-X-MAP":
                map_uri = attributes(value).get("URI") or None
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                pdt = parse_pdt(value)
            elif tag == "#EXT-X-BYTERANGE":
                byterange = True
            elif tag == "#EXT-X-ENDLIST":
                endlist = True
            elif tag == "#EXT-X-INDEPENDENT-SEGMENTS":
                independent = True
            elif tag == "#EXT-X-PART-INF":
                part_target = float(attributes(value)["PART-TARGET"])
                if not 0 < part_target < 60:
                    raise PlaylistError(f"implausible part target {part_target}")
            elif tag == "#EXT-X-PART":
                attrs = attributes(value)
                if "BYTERANGE" in attrs or not attrs.get("URI"):
                    raise PlaylistError("EXT-X-PART without URI, or with BYTERANGE (not supported)")
                part_duration = float(attrs["DURATION"])
                if not 0 <= part_duration < 60:
                    raise PlaylistError(f"implausible part duration {part_duration}")
                parts.append(UpstreamPart(attrs["URI"], part_duration, attrs.get("INDEPENDENT") == "YES"))
            elif tag == "#EXT-X-PRELOAD-HINT":
                attrs = attributes(value)
                if attrs.get("TYPE") == "PART" and attrs.get("URI"):
                    hint = attrs["URI"]
        except (ValueError, KeyError) as exc:
            if isinstance(exc, PlaylistError):
                raise
            raise PlaylistError(f"bad {tag} value {value[:40]!r}") from exc
    if target is None:
        raise PlaylistError("media playlist without #EXT-X-TARGETDURATION")
    if (segments and any(s.parts for s in segments) or parts) and part_target is None:
        raise PlaylistError("EXT-X-PART without EXT-X-PART-INF")
    return MediaPlaylist(target, sequence, version, tuple(segments), endlist, independent, part_target,
                         tuple(parts), hint, map_uri)


def add_query(text: str, query: str) -> str:
    """Append ``query`` (e.g. ``token=...``) to every URI of a playlist.

    Players resolve a playlist's URIs relative to it but drop its query string, so a token
    given as ``?token=`` must be written into every URI or the next request is refused.
    """
    if not query:
        return text
    out = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            line = _with_query(stripped, query)
        elif stripped.startswith("#") and 'URI="' in stripped:
            line = _URI_ATTR.sub(lambda m: f'URI="{_with_query(m.group(1), query)}"', line)
        out.append(line)
    return "\n".join(out)


def _with_query(uri: str, query: str) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{query}"
