"""Which relative paths the origin accepts, and how each kind of file is served.

Every path that reaches the disk goes through ``safe_relpath`` first: the origin must never
read or write outside its data_dir whatever a client or the transcoder sends.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Optional

# The transcoder's output tree (see onair.endpoints): HLS CMAF + MPEG-TS, DASH, one screenshot.
UPLOAD_ROOTS = ("hls", "dash")
SCREENSHOT = "screenshot.jpg"
MAX_PATH_LENGTH = 512
MAX_COMPONENTS = 8


@dataclass(frozen=True)
class Kind:
    content_type: str
    # Playlists change every segment; segments never change once written (names carry a run id
    # and the DVR versions any overwrite), so a CDN may keep them forever.
    cache: str
    playlist: bool = False
    media: bool = False


_PLAYLIST = "no-cache"
_SEGMENT = "max-age=31536000, immutable"
KINDS: dict[str, Kind] = {
    ".m3u8": Kind("application/vnd.apple.mpegurl", _PLAYLIST, playlist=True),
    ".mpd": Kind("application/dash+xml", _PLAYLIST, playlist=True),
    ".m4s": Kind("video/iso.segment", _SEGMENT, media=True),
    ".mp4": Kind("video/mp4", _SEGMENT, media=True),
    ".m4v": Kind("video/mp4", _SEGMENT, media=True),
    ".m4a": Kind("audio/mp4", _SEGMENT, media=True),
    ".ts": Kind("video/mp2t", _SEGMENT, media=True),
    ".aac": Kind("audio/aac", _SEGMENT, media=True),
    ".vtt": Kind("text/vtt", _SEGMENT, media=True),
    # Refreshed every few seconds under the same name.
    ".jpg": Kind("image/jpeg", "max-age=5"),
}


class BadPath(ValueError):
    """The path is malformed or tries to leave the data directory (HTTP 400)."""


def safe_relpath(path: str) -> str:
    """A normalised relative path with no way out of its root, or ``BadPath``.

    Refuses instead of normalising: a client sending ``..``, ``.``, an absolute path, a
    backslash, a NUL or a hidden component (the origin keeps its own state in dot-directories)
    is not a player, and a silently rewritten path could alias another file.
    """
    if not path or len(path) > MAX_PATH_LENGTH:
        raise BadPath("empty or overlong path")
    if "\x00" in path or "\\" in path:
        raise BadPath("NUL or backslash in path")
    if path.startswith("/"):
        raise BadPath("absolute path")
    parts = path.split("/")
    if len(parts) > MAX_COMPONENTS:
        raise BadPath("too many path components")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadPath("empty, '.' or '..' path component")
        if part.startswith("."):
            raise BadPath("hidden path component")
        if any(ord(c) < 0x20 or c == "\x7f" for c in part):
            raise BadPath("control character in path")
    return "/".join(parts)


def kind_of(path: str) -> Optional[Kind]:
    return KINDS.get(posixpath.splitext(path)[1].lower())


def is_publishable(path: str) -> bool:
    """Whether ``path`` (already safe) belongs to the transcoder's output tree."""
    if path == SCREENSHOT:
        return True
    root = path.split("/", 1)[0]
    return root in UPLOAD_ROOTS and "/" in path and kind_of(path) is not None and not path.endswith(".jpg")


def resolve_uri(playlist_path: str, uri: str) -> str:
    """The data_dir-relative path a playlist URI points at; ``BadPath`` for URLs or escapes."""
    if not uri or "://" in uri or uri.startswith("/") or "?" in uri or "#" in uri:
        raise BadPath(f"unsupported URI in playlist: {uri[:80]!r}")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(playlist_path), uri))
    resolved = safe_relpath(joined)
    if not is_publishable(resolved):
        raise BadPath(f"playlist URI outside the output tree: {uri[:80]!r}")
    return resolved


def relative_uri(playlist_path: str, target: str) -> str:
    """How a playlist at ``playlist_path`` refers to ``target`` (both data_dir-relative)."""
    return posixpath.relpath(target, posixpath.dirname(playlist_path) or ".")
