"""A viewer of a public HLS playlist that prints what it sees as JSON lines, with wall-clock times.

Standard library and ffmpeg only: bench/cluster_path.py runs this same file on the host (process
runner) and as `python3 -c` in a pod of the onair image (real node, where the playback URL is a
cluster DNS name). Host and pods share one kernel clock, so the times compare with the host's.

    python3 _hls_viewer.py first MASTER_URL   # until a segment is downloadable, as a player starts
    python3 _hls_viewer.py watch MASTER_URL   # every new segment, with each frame's mean RGB

Lines: {"event": "polling"} once the first request was made; `first` then prints {"event":
"playable", "t": ...} (the master, the first variant's media playlist and its newest segment
downloaded) and exits; `watch` prints {"event": "baseline"} with what was listed when it started,
then {"event": "segment", "t": <when first listed>, "uri": ..., "rgb": [[r, g, b], ...]} per new
segment until killed or its deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

POLL_SECONDS = 0.1
DEADLINE_SECONDS = 600


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def get(url: str, timeout: float = 5) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.read()


def first_variant(master: str) -> str:
    """The first variant URI of a master playlist (what a player starts with)."""
    for line in master.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise ValueError("master playlist lists no variant")


def media_entries(playlist: str) -> tuple[str | None, list[str]]:
    """(init section URI or None, segment URIs) of a media playlist."""
    init, segments = None, []
    for line in playlist.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MAP:"):
            for attr in line[len("#EXT-X-MAP:") :].split(","):
                key, _, value = attr.partition("=")
                if key.strip() == "URI":
                    init = value.strip().strip('"')
        elif line and not line.startswith("#"):
            segments.append(line)
    return init, segments


def frame_rgb(data: bytes) -> list[list[int]]:
    """Mean RGB of every frame of (init section +) segment bytes: ffmpeg scales each to one pixel."""
    out = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            "-map",
            "0:v:0",
            "-vf",
            "scale=1:1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    return [list(out[i : i + 3]) for i in range(0, len(out) - 2, 3)]


def first(master_url: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    announced = False
    while time.monotonic() < deadline:
        try:
            media_url = urllib.parse.urljoin(master_url, first_variant(get(master_url).decode()))
            init, segments = media_entries(get(media_url).decode())
            if segments:
                size = len(get(urllib.parse.urljoin(media_url, segments[-1])))
                if init:
                    size += len(get(urllib.parse.urljoin(media_url, init)))
                emit("playable", t=time.time(), bytes=size, uri=segments[-1])
                return
        except Exception:  # noqa: BLE001 - not there yet: keep polling as a player would
            pass
        if not announced:
            emit("polling", t=time.time())
            announced = True
        time.sleep(POLL_SECONDS)
    emit("timeout", t=time.time())
    sys.exit(1)


def watch(master_url: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    media_url = None
    seen: set[str] | None = None
    while time.monotonic() < deadline:
        try:
            if media_url is None:
                media_url = urllib.parse.urljoin(master_url, first_variant(get(master_url).decode()))
            init, segments = media_entries(get(media_url).decode())
        except Exception:  # noqa: BLE001 - a missed poll is retried
            time.sleep(POLL_SECONDS)
            continue
        listed = time.time()
        if seen is None:
            seen = set(segments)
            emit("baseline", t=listed, count=len(segments))
            emit("polling", t=listed)
        for uri in segments:
            if uri in seen:
                continue
            seen.add(uri)
            try:
                data = (get(urllib.parse.urljoin(media_url, init)) if init else b"") + get(
                    urllib.parse.urljoin(media_url, uri)
                )
                rgb = frame_rgb(data)
            except Exception as e:  # noqa: BLE001 - reported, the host decides
                emit("segment", t=listed, uri=uri, rgb=[], error=repr(e))
                continue
            emit("segment", t=listed, uri=uri, rgb=rgb)
        time.sleep(POLL_SECONDS)
    emit("timeout", t=time.time())


if __name__ == "__main__":
    {"first": first, "watch": watch}[sys.argv[1]](sys.argv[2])
