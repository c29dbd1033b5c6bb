"""Reading the recorder's source: what of a source URL may be logged, and its HLS playlists
fetched with the read token."""

from __future__ import annotations

import asyncio
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

import aiohttp

PLAYLIST_TIMEOUT_SECONDS = 5.0


def display_url(url: str) -> str:
    """The URL without query or credentials: a playback token must never reach the log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def url_secrets(url: str) -> list[str]:
    parts = urlsplit(url)
    return [secret for secret in (parts.query, parts.password) if secret]


def is_http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


class SourceNotLive(Exception):
    """The source cannot be read yet; the message says why, for the log."""


def bearer_header(token: Optional[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def fetch_playlist(url: str, token: Optional[str] = None) -> str:
    try:
        timeout = aiohttp.ClientTimeout(total=PLAYLIST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(url, headers=bearer_header(token)) as response:
                if response.status != 200:
                    raise SourceNotLive(f"playlist answered HTTP {response.status}")
                return await response.text()
    except (aiohttp.ClientError, asyncio.TimeoutError, UnicodeDecodeError) as exc:
        raise SourceNotLive(f"playlist unreachable: {type(exc).__name__} {exc}".strip()) from None
