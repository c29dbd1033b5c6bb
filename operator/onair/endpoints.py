"""URLs that cross role boundaries: how encoders push, how roles read each other, where viewers play.

Pure string builders shared by the operator (status URLs, rendered configs), the agents and the
tests, so a path is spelled in one place only.
"""

from __future__ import annotations

from urllib.parse import quote

RTMP_APP = "live"
# Publishers use their stream key as the RTMP stream name; the ingest renames the accepted
# publish to this fixed internal name so readers never need the key.
INTERNAL_STREAM = "stream"

# Paths on the origin's public HTTP port.
PLAYBACK_PATHS = {
    "hlsCmaf": "hls/cmaf/master.m3u8",
    "hlsMpegts": "hls/ts/master.m3u8",
    "dash": "dash/manifest.mpd",
    "player": "player",
    "screenshot": "screenshot.jpg",
    # WHEP (draft-ietf-wish-whep): POST an SDP offer here; the origin passes it on to the transcoder.
    "whep": "whep",
}
# The finished recordings on the recorder's volume, on the origin's public port: /recordings/<part>.m3u8 and .mp4.
RECORDINGS_PATH = "recordings"


def vod_playlist_name(part_file: str) -> str:
    """``<part>.m3u8`` for ``<part>.mp4``: the part's HLS VOD playlist, next to it on the volume or in the bucket."""
    return f"{part_file.removesuffix('.mp4')}.m3u8"


# The transcoder PUTs (and DELETEs) every output file under this prefix of the origin's upload port
# (never the public one), at the same relative path it is served from (hls/cmaf/720p/..., dash/...,
# screenshot.jpg).
UPLOAD_PREFIX = "upload"


def rtmp_push_url(host: str, port: int = 1935, tls: bool = False) -> str:
    scheme = "rtmps" if tls else "rtmp"
    return f"{scheme}://{host}:{port}/{RTMP_APP}"


def rtmp_publish_url(host: str, stream_key: str, port: int = 1935, tls: bool = False) -> str:
    """What an encoder pushes to: server URL + stream key, as OBS joins them."""
    return f"{rtmp_push_url(host, port, tls)}/{quote(stream_key, safe='')}"


# SRT callers name what they do in the streamid: the shared passphrase goes with ``publish``, a
# member's personal publish token with ``publish:<header>.<payload>`` and its signature as the
# passphrase (``personal_srt_url``).
SRT_PUBLISH_STREAMID = "publish"
SRT_PERSONAL_PREFIX = SRT_PUBLISH_STREAMID + ":"


def srt_push_url(host: str, port: int = 9998, passphrase: str | None = None, latency_ms: int | None = None) -> str:
    params = [f"streamid={SRT_PUBLISH_STREAMID}"]
    if passphrase:
        params.append(f"passphrase={quote(passphrase, safe='')}")
    if latency_ms is not None:
        params.append(f"latency={latency_ms * 1000}")  # ffmpeg's srt latency is in microseconds
    return f"srt://{host}:{port}?{'&'.join(params)}"


def personal_srt_url(srt_url: str, token: str) -> str:
    """The SRT push URL for a personal publish token: ``srt_url`` (status.ingest.srt, without
    credentials) with ``streamid=publish:<header>.<payload>`` and ``passphrase=<signature>``, so
    the token's secret part is proven by the SRT handshake and never sent in the clear."""
    claims, _, signature = token.rpartition(".")
    base, _, query = srt_url.partition("?")
    kept = [p for p in query.split("&") if p and not p.startswith(("streamid=", "passphrase="))]
    return f"{base}?" + "&".join(
        [f"streamid={quote(SRT_PERSONAL_PREFIX + claims, safe=':')}", f"passphrase={signature}", *kept]
    )


def whip_url(host: str, port: int = 8443, tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}://{host}:{port}/whip"


def ingest_read_url(host: str, port: int = 1935, token: str | None = None) -> str:
    """Where the transcoder and the recorder read an ingest slot (cluster-internal).

    Rendered configs never carry ``token`` (it is a secret): readers add it at run time from
    their ``readTokenFile`` with ``with_read_token``.
    """
    return with_read_token(f"rtmp://{host}:{port}/{RTMP_APP}/{INTERNAL_STREAM}", token)


def with_read_token(url: str, token: str | None) -> str:
    """``url`` with ``token=<token>`` added to its query; unchanged without a token.

    nginx-rtmp splits ``?...`` off the played stream name and posts it to the ingest's
    ``on_play`` callback, which checks the token.
    """
    if not token:
        return url
    return f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}"


def origin_upload_url(host: str, port: int = 8082) -> str:
    return f"http://{host}:{port}/{UPLOAD_PREFIX}"


def playback_urls(base_url: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {key: f"{base}/{path}" for key, path in PLAYBACK_PATHS.items()}
