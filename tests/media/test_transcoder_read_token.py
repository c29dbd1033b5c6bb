"""Behind an ingest that checks plays, the transcoder reads with the token from readTokenFile."""

from __future__ import annotations

import m3u8
import pytest

from tests.fixtures.media import wait_for

pytestmark = [pytest.mark.media, pytest.mark.timeout(150)]


def test_readers_play_with_the_token_file_and_never_log_it(ingest_agent, publishers, transcoder_agent, tmp_path):
    ingest = ingest_agent.start(protocols=("rtmp",))
    assert ingest.read_token
    token_file = tmp_path / "readToken"
    token_file.write_text(ingest.read_token + "\n")  # mounted Secrets may end with a newline
    publishers.rtmp(ingest.rtmp_url, width=320, height=180)
    ingest.wait_receiving()

    tx = transcoder_agent.start(
        main_url=ingest.anonymous_read_url,
        read_token_file=str(token_file),
        tracks=["180p"],
        source_size=(320, 180),
        hls_mpegts=False,
        dash=False,
        screenshot_interval_seconds=0,
    )
    tx.wait_status(lambda s: s.get("activeSource") == "main", 40, "main selected")
    tx.put_desired(phase="live", broadcasting=True)
    path = tx.wait_file("hls/cmaf/180p/index.m3u8", 40)
    wait_for(lambda: len(m3u8.loads(path.read_text()).segments) >= 1, 30, what="a segment")
    assert ingest.read_token not in tx.log_text()
    assert "refused play" not in ingest.log_text()


def test_without_the_token_the_ingest_refuses_and_the_log_says_why(
    ingest_agent, publishers, transcoder_agent, tmp_path
):
    ingest = ingest_agent.start(protocols=("rtmp",))
    publishers.rtmp(ingest.rtmp_url, width=320, height=180)
    ingest.wait_receiving()
    missing = tmp_path / "absent-readToken"
    tx = transcoder_agent.start(
        main_url=ingest.anonymous_read_url,
        read_token_file=str(missing),
        tracks=["180p"],
        source_size=(320, 180),
        hls_mpegts=False,
        dash=False,
        screenshot_interval_seconds=0,
    )
    assert f"no read token in {missing}" in tx.log_text()
    ingest.wait_log("refused play from 127.0.0.1: no read token")
    assert tx.status()["activeSource"] is None
