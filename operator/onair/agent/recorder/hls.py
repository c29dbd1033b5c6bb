"""Which HLS playlists a ``transcoded`` recording copies: the top rung of the origin's ladder.

The origin serves a master playlist; we record its highest-bandwidth variant, plus the audio
rendition it references when audio is a separate playlist (CMAF ladders usually do that).
Pure text in, URLs out, so the choice is unit-tested without a server.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urljoin

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def parse_attributes(text: str) -> dict[str, str]:
    return {key: value.strip('"') for key, value in _ATTR.findall(text)}


@dataclass(frozen=True)
class HlsSource:
    video_url: str
    audio_url: Optional[str] = None
    bandwidth: Optional[int] = None
    resolution: Optional[str] = None


def is_master(text: str) -> bool:
    return "#EXT-X-STREAM-INF" in text


def _pixels(resolution: Optional[str]) -> int:
    try:
        width, height = (resolution or "").lower().split("x")
        return int(width) * int(height)
    except ValueError:
        return 0


def choose_top_rung(text: str, base_url: str) -> HlsSource:
    """The highest BANDWIDTH variant (resolution breaks ties) and its audio rendition, as absolute URLs.

    A media playlist (no variants) is recorded as it is.
    """
    if not text.lstrip().startswith("#EXTM3U"):
        raise ValueError("not an HLS playlist (no #EXTM3U header)")
    if not is_master(text):
        return HlsSource(video_url=base_url)
    lines = [line.strip() for line in text.splitlines()]
    variants: list[tuple[int, int, dict[str, str], str]] = []
    audio_groups: dict[str, list[dict[str, str]]] = {}
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attrs = parse_attributes(line.split(":", 1)[1])
            uri = next((candidate for candidate in lines[index + 1:] if candidate and not candidate.startswith("#")), None)
            if uri is None:
                continue
            bandwidth = int(attrs.get("BANDWIDTH", "0") or 0)
            variants.append((bandwidth, _pixels(attrs.get("RESOLUTION")), attrs, uri))
        elif line.startswith("#EXT-X-MEDIA:"):
            attrs = parse_attributes(line.split(":", 1)[1])
            if attrs.get("TYPE") == "AUDIO":
                audio_groups.setdefault(attrs.get("GROUP-ID", ""), []).append(attrs)
    if not variants:
        raise ValueError("master playlist lists no variant with a URI")
    bandwidth, _, attrs, uri = max(variants, key=lambda v: (v[0], v[1]))
    audio_url = None
    renditions = audio_groups.get(attrs.get("AUDIO", ""), [])
    # A rendition without URI means the audio is muxed into the variant itself.
    with_uri = [r for r in renditions if r.get("URI")]
    if with_uri:
        chosen = next((r for r in with_uri if r.get("DEFAULT") == "YES"), with_uri[0])
        audio_url = urljoin(base_url, chosen["URI"])
    return HlsSource(video_url=urljoin(base_url, uri), audio_url=audio_url,
                     bandwidth=bandwidth or None, resolution=attrs.get("RESOLUTION"))


@dataclass(frozen=True)
class MediaPlaylistState:
    ended: bool
    last_segment: Optional[str]


def media_playlist_state(text: str) -> MediaPlaylistState:
    """Whether a media playlist is over (ENDLIST) and which segment is its newest.

    A playlist that ended, or whose newest segment has not changed since we last recorded it,
    is not a live source: ffmpeg would only record its old segments over again.
    """
    if not text.lstrip().startswith("#EXTM3U"):
        raise ValueError("not an HLS playlist (no #EXTM3U header)")
    segments = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return MediaPlaylistState(ended="#EXT-X-ENDLIST" in text, last_segment=segments[-1] if segments else None)
