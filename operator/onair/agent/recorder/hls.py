"""Which HLS playlists a ``transcoded`` recording copies: the top rung of the origin's ladder.

The origin serves a master playlist; we record its highest-bandwidth variant, plus the audio
rendition it references when audio is a separate playlist (CMAF ladders usually do that).
Pure text in, URLs out, so the choice is unit-tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import urljoin

from onair.agent import hls


@dataclass(frozen=True)
class HlsSource:
    video_url: str
    audio_url: Optional[str] = None
    bandwidth: Optional[int] = None
    resolution: Optional[str] = None


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
    master = hls.parse_master_playlist(text)
    if not hls.is_master(text):
        return HlsSource(video_url=base_url)
    if not master.variants:
        raise ValueError("master playlist lists no variant with a URI")
    top = max(master.variants, key=lambda v: (v.bandwidth, _pixels(v.resolution)))
    # A rendition without URI means the audio is muxed into the variant itself.
    with_uri = [r for r in master.renditions if r.type == "AUDIO" and r.group_id == (top.audio_group or "") and r.uri]
    audio_url = None
    if with_uri:
        chosen = next((r for r in with_uri if r.default), with_uri[0])
        audio_url = urljoin(base_url, chosen.uri)
    return HlsSource(
        video_url=urljoin(base_url, top.uri),
        audio_url=audio_url,
        bandwidth=top.bandwidth or None,
        resolution=top.resolution,
    )


@dataclass(frozen=True)
class MediaPlaylistState:
    ended: bool
    last_segment: Optional[str]


def media_playlist_state(text: str) -> MediaPlaylistState:
    """Whether a media playlist is over (ENDLIST) and which segment is its newest.

    A playlist that ended, or whose newest segment has not changed since we last recorded it,
    is not a live source: ffmpeg would only record its old segments over again.
    """
    data = hls.parse(text)
    uris = [segment["uri"] for segment in data["segments"] if segment.get("uri")]
    return MediaPlaylistState(ended=data["is_endlist"], last_segment=uris[-1] if uris else None)
