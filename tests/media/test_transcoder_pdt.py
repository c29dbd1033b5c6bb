"""EXT-X-PROGRAM-DATE-TIME against the capture time written into the picture, through the real
chain: a camera stamping each frame with the time it makes it (bench/g2g), encoded with x264's
zerolatency tune and pushed over RTMP to the ingest agent, read by the transcoder agent, published
as HLS (CMAF and MPEG-TS, two rungs). The first frame of each published segment is decoded and its
stamp read back: the segment's date must be when that frame reached the ingest, which is its stamp
plus the camera's encoding and the loopback, within a frame."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Optional

import m3u8
import pytest

from bench.g2g import clock
from bench.g2g.camera import Camera
from tests.fixtures.media import FFMPEG, wait_for

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(300)]

FPS = 30
FRAME = 1 / FPS
# The camera's zerolatency x264 at 640x360 and RTMP over loopback: what lies between the stamp and
# the ingest receiving the frame. Measured here: a few milliseconds.
ENCODE_AND_TRANSIT = 0.015
WIDTH, HEIGHT = 640, 360
RENDITIONS = [("cmaf", "360p"), ("cmaf", "180p"), ("ts", "360p"), ("ts", "180p")]


class VideoOnlyCamera(Camera):
    """Without the camera's audio: its ffmpeg starts the audio clock (``-re``) only once the RTMP
    connection is up, while frames are made from the start, and interleaving then holds every video
    frame until the audio catches up: each would reach the ingest that long (0.2-0.3 s here) after
    its stamp, which is the camera's doing, not a date to correct."""

    def argv(self) -> list[str]:
        args = super().argv()
        audio = args.index("-re")
        args[audio : audio + 5] = []  # -re -f lavfi -i sine=...
        for option in ("-c:a", "-b:a", "-ar"):
            at = args.index(option)
            args[at : at + 2] = []
        args.remove("-shortest")
        return args


def first_frame_stamp(rendition_dir: Path, kind: str, uri: str, init: Optional[str]) -> Optional[float]:
    """The capture time (Unix seconds) the first frame of a published segment carries."""
    data = ((rendition_dir / init).read_bytes() if init else b"") + (rendition_dir / uri).read_bytes()
    out = subprocess.run(
        [
            FFMPEG,
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "mp4" if kind == "cmaf" else "mpegts",
            "-i",
            "pipe:0",
            "-frames:v",
            "1",
            "-vf",
            f"scale={WIDTH}:{HEIGHT}",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    if len(out) < WIDTH * HEIGHT:
        return None
    value = clock.read_band(lambda x, y: out[y * WIDTH + x], WIDTH, HEIGHT)
    return value / 1000 if value is not None else None


def published(out: Path, kind: str, rung: str) -> Optional[m3u8.M3U8]:
    path = out / "hls" / kind / rung / "index.m3u8"
    return m3u8.loads(path.read_text()) if path.is_file() else None


@pytest.mark.parametrize("low_latency", [False, True], ids=["segments", "ll-hls-parts"])
def test_program_date_time_is_when_the_first_frame_reached_the_ingest(ingest_agent, transcoder_agent, low_latency):
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    renditions = [r for r in RENDITIONS if r[0] == "cmaf" or not low_latency]
    tx = transcoder_agent.start(
        main_url=ingest.read_url,
        tracks=["360p", "180p"],
        source_size=(WIDTH, HEIGHT),
        hls_mpegts=not low_latency,
        dash=False,
        segment_seconds=1,
        playlist_segments=12,
        low_latency=low_latency,
        part_seconds=0.2,
        # Plain HLS as in production: veryfast with B-frames, so segments
        # start with a decode time before their keyframe's presentation.
        **({} if low_latency else {"preset": "veryfast"}),
    )
    camera = VideoOnlyCamera(
        ingest.rtmp_url,
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        bitrate_kbps=800,
        keyframe_seconds=1,
        encoder="zerolatency",
    ).start()
    try:
        ingest.wait_receiving()
        tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
        tx.put_desired(phase="live", broadcasting=True)
        assert tx.out is not None
        out = tx.out

        def enough() -> Optional[dict]:
            lists = {r: published(out, *r) for r in renditions}
            return lists if all(pl is not None and len(pl.segments) >= 8 for pl in lists.values()) else None

        lists = wait_for(enough, 90, what="8 segments in every rendition")
    finally:
        camera.stop()
    dates_by_stamp: dict[tuple[str, str], dict[float, datetime]] = {}
    errors = []
    for (kind, rung), pl in lists.items():
        rendition_dir = out / "hls" / kind / rung
        # The first may have slid halfway out while we read; LL-HLS: not the one still being cut.
        segments = [s for s in pl.segments if s.uri][1:]
        dated: dict[float, datetime] = {}
        for seg, nxt in zip(segments, segments[1:]):
            # Dates follow media time: one segment's date plus its duration is the next one's.
            step = (nxt.program_date_time - seg.program_date_time).total_seconds()
            assert step == pytest.approx(seg.duration, abs=0.002), (kind, rung, seg.uri)
        for seg in segments:
            init = seg.init_section.uri if seg.init_section else None
            try:
                stamp = first_frame_stamp(rendition_dir, kind, seg.uri, init)
            except (FileNotFoundError, subprocess.CalledProcessError):
                continue  # deleted as it slid out of the window
            assert stamp is not None, f"{kind}/{rung}/{seg.uri}: the first frame's stamp is unreadable"
            date = seg.program_date_time
            dated[stamp] = date
            errors.append((kind, rung, seg.uri, round(date.timestamp() - stamp, 4)))
        dates_by_stamp[(kind, rung)] = dated
    late = [e for e in errors if not -FRAME <= e[3] <= FRAME + ENCODE_AND_TRANSIT]
    assert len(errors) >= 5 * len(renditions) and not late, (
        f"date - capture stamp (s) outside one frame: {late} (all: {errors})"
    )
    # The same cut has the same date in every rendition and packaging.
    reference = dates_by_stamp[RENDITIONS[0]]
    for rendition, dated in dates_by_stamp.items():
        common = set(reference) & set(dated)
        assert len(common) >= 4, (rendition, sorted(reference), sorted(dated))
        assert all(dated[s] == reference[s] for s in common), (rendition, {s: (reference[s], dated[s]) for s in common})


def test_a_restarted_encoder_is_dated_from_its_own_first_frame_and_never_goes_back(ingest_agent, transcoder_agent):
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    tx = transcoder_agent.start(
        main_url=ingest.read_url,
        tracks=["180p"],
        source_size=(WIDTH, HEIGHT),
        hls_mpegts=False,
        dash=False,
        segment_seconds=1,
        playlist_segments=20,
    )
    camera = VideoOnlyCamera(
        ingest.rtmp_url,
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        bitrate_kbps=800,
        keyframe_seconds=1,
        encoder="zerolatency",
    ).start()
    try:
        ingest.wait_receiving()
        tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
        tx.put_desired(phase="live", broadcasting=True)
        assert tx.out is not None
        out = tx.out
        wait_for(
            lambda: (pl := published(out, "cmaf", "180p")) is not None and len(pl.segments) >= 3,
            60,
            what="3 segments of the first run",
        )
        pid = tx.encoder_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # a crash: the next encoder is a new run
        after = wait_for(
            lambda: (
                (pl := published(out, "cmaf", "180p")) is not None
                and sum(
                    1
                    for s in pl.segments[
                        next((i for i, s in enumerate(pl.segments) if s.discontinuity), len(pl.segments)) :
                    ]
                )
                >= 4
                and pl
            ),
            90,
            what="4 segments of the restarted run",
        )
    finally:
        camera.stop()
    segments = after.segments
    restart = next(i for i, s in enumerate(segments) if s.discontinuity)
    for a, b in zip(segments, segments[1:]):
        assert (b.program_date_time - a.program_date_time).total_seconds() >= a.duration - 0.002, (a.uri, b.uri)
    rendition_dir = out / "hls/cmaf/180p"
    errors = []
    for seg in segments[restart + 1 :]:  # the first of the run may replay frames the last one showed
        stamp = first_frame_stamp(rendition_dir, "cmaf", seg.uri, seg.init_section.uri)
        assert stamp is not None, seg.uri
        errors.append((seg.uri, round(seg.program_date_time.timestamp() - stamp, 4)))
    assert all(-FRAME <= e <= FRAME + ENCODE_AND_TRANSIT for _, e in errors), errors
