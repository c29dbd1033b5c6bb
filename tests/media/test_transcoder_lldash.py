"""LL-DASH through the real chain: ingest agent -> transcoder (lowLatency) -> one chunked PUT per DASH
segment, chunk by chunk as ffmpeg writes it -> origin agent. What an LL-DASH client gets: an MPD that
announces the chunks (availabilityTimeOffset, availabilityTimeComplete="false", a ServiceDescription
latency target, the origin's UTCTiming), and the segment being written answered with HTTP chunked
transfer: its first chunks before the segment is complete, and in the end exactly the finished segment."""

from __future__ import annotations

import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from onair.agent import mp4box
from tests.fixtures.media import FFMPEG, ffprobe_json, wait_for

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(240)]

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
SEGMENT = re.compile(r"^(?P<run>.+)_(?P<rep>\d+)_(?P<number>\d{6})\.m4s$")


def mpd_of(origin) -> ET.Element:
    response = origin.get("dash/manifest.mpd")
    assert response.status_code == 200, response.text
    return ET.fromstring(response.content)


def newest_segment(data_dir: Path, rep: str = "0") -> tuple[str, str, int] | None:
    """(run, representation, number) of the newest complete segment of ``rep`` on the origin's disk."""
    found = [m for p in (data_dir / "dash").glob("*.m4s") if (m := SEGMENT.match(p.name)) and m["rep"] == rep]
    if not found:
        return None
    newest = max(found, key=lambda m: (m["run"], int(m["number"])))
    return newest["run"], newest["rep"], int(newest["number"])


@pytest.fixture
def lldash_chain(ingest_agent, origins, transcoder_agent, publishers, tmp_path):
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    origin = origins.start(phase="live", low_latency=True, part_seconds=0.2)
    token_file = tmp_path / "uploadToken"
    token_file.write_text(origin.upload_token + "\n")
    tx = transcoder_agent.start(
        main_url=ingest.read_url,
        tracks=["180p", "144p"],
        source_size=(320, 180),
        output_dir=None,
        output_url=origin.upload_url,
        output_token_file=str(token_file),
        low_latency=True,
        part_seconds=0.2,
        hls_cmaf=False,
        hls_mpegts=False,
        dash=True,
    )
    publishers.rtmp(ingest.rtmp_url, width=320, height=180, fps=30)
    ingest.wait_receiving()
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    wait_for(lambda: (s := newest_segment(origin.data_dir)) and s[2] >= 3, 60, what="3 DASH segments on the origin")
    return origin, tx


def test_the_low_latency_mpd_announces_chunks_and_a_latency_target(lldash_chain):
    origin, _ = lldash_chain
    root = mpd_of(origin)
    assert root.get("type") == "dynamic"
    templates = root.findall(".//d:SegmentTemplate", NS)
    assert templates and all(t.get("duration") and t.find("d:SegmentTimeline", NS) is None for t in templates)
    for template in templates:
        segment = int(template.get("duration")) / int(template.get("timescale"))
        assert segment == pytest.approx(1.0)
        assert float(template.get("availabilityTimeOffset")) == pytest.approx(segment - 0.2, abs=0.001)
        assert template.get("availabilityTimeComplete") == "false"
    latency = root.find("d:ServiceDescription/d:Latency", NS)
    assert latency is not None and 0 < int(latency.get("target")) <= 2000
    assert root.find("d:ServiceDescription/d:PlaybackRate", NS) is not None
    assert [t.get("value") for t in root.findall("d:UTCTiming", NS)] == [f"//{origin.url('time').split('//')[1]}"]


def test_the_segment_being_written_is_served_chunked_before_it_is_complete(lldash_chain, tmp_path):
    origin, _ = lldash_chain
    attempts = []
    for _ in range(10):
        run, rep, number = newest_segment(origin.data_dir)
        name = f"{run}_{rep}_{number + 1:06d}.m4s"
        on_disk = origin.data_dir / "dash" / name
        received: list[bytes] = []
        complete_when_first = None
        with httpx.stream("GET", origin.url(f"dash/{name}"), timeout=10) as response:
            assert response.status_code == 200, response.read()
            headers = response.headers
            for chunk in response.iter_raw():
                if not received:
                    # The origin stores a segment when its upload completes: not there yet, not complete yet.
                    complete_when_first = on_disk.exists()
                received.append(chunk)
        attempts.append((name, headers.get("transfer-encoding"), complete_when_first, len(received)))
        if complete_when_first is False:
            break
        time.sleep(0.1)  # that segment was complete by the time we asked: try the next one
    else:
        pytest.fail(f"never got a segment before it was complete: {attempts}")
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
    assert headers["content-type"] == "video/iso.segment"
    assert "immutable" in headers["cache-control"] and "private" not in headers["cache-control"]
    streamed = b"".join(received)
    assert len(received[0]) < len(streamed)  # its first bytes came before the rest existed
    # In the end: exactly the finished segment, as stored and as served from disk afterwards.
    assert on_disk.read_bytes() == streamed
    later = origin.get(f"dash/{name}")
    assert later.status_code == 200 and later.content == streamed and later.headers.get("content-length")
    # One CMAF chunk per part (5 x 0.2 s), decodable after the init segment: 30 frames.
    assert sum(1 for box in mp4box.boxes(streamed) if box.kind == b"moof") == 5
    init = origin.get(f"dash/{run}_init_{rep}.m4s")
    assert init.status_code == 200
    (tmp_path / "segment.mp4").write_bytes(init.content + streamed)
    probe = ffprobe_json(str(tmp_path / "segment.mp4"), "-count_frames", "-select_streams", "v:0")
    assert int(probe["streams"][0]["nb_read_frames"]) == 30


def test_a_request_for_the_next_segment_is_held_until_its_first_chunk(lldash_chain):
    """What availabilityTimeOffset lets a player do: ask before the segment exists at all."""
    origin, tx = lldash_chain
    work = Path(tx.config.work_dir) / "out" / "dash"  # the encoder writes there (TranscoderAgent.work_dir)

    def one_being_written():
        run, rep, number = newest_segment(origin.data_dir)
        written = work / f"{run}_{rep}_{number + 1:06d}.m4s.tmp"
        return (run, rep, number) if written.exists() and written.stat().st_size else None

    # ffmpeg is writing segment N+1 (its first chunk is out; the packager looks every 25 ms), so
    # N+2 is not even begun.
    run, rep, number = wait_for(one_being_written, 20, what="a segment being written", interval=0.01)
    time.sleep(0.1)
    name = f"{run}_{rep}_{number + 2:06d}.m4s"
    assert not (origin.data_dir / "dash" / name).exists()
    response = httpx.get(origin.url(f"dash/{name}"), timeout=15)
    assert response.status_code == 200, response.text
    assert response.content == (origin.data_dir / "dash" / name).read_bytes()
    assert origin.get(f"dash/{run}_{rep}_{number + 9:06d}.m4s").status_code == 404  # far ahead: not held


def test_a_client_without_ll_dash_support_plays_the_same_mpd(lldash_chain):
    """ffmpeg's dash demuxer knows nothing of availabilityTimeOffset or chunks: it still decodes the live stream."""
    origin, _ = lldash_chain
    done = subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-stats",
            "-i",
            origin.url("dash/manifest.mpd"),
            "-map",
            "0:v:0",
            "-frames:v",
            "45",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.findall(r"frame=\s*(\d+)", done.stderr)[-1] == "45", done.stderr[-2000:]
