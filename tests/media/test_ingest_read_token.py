"""Reading the raw source needs the read token: the RTMP port may be a public LoadBalancer."""

from __future__ import annotations

import subprocess

import pytest

from onair import endpoints
from tests.fixtures.media import FFPROBE, ffprobe_json

pytestmark = [pytest.mark.media, pytest.mark.timeout(120)]


def _probe(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FFPROBE, "-v", "error", "-show_streams", "-of", "json", url], capture_output=True, timeout=20, text=True
    )


def _plays(metrics: str, outcome: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("onair_ingest_plays_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_only_a_reader_with_the_read_token_gets_the_stream(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",))
    assert ingest.read_token and f"token={ingest.read_token}" in ingest.read_url
    publishers.rtmp(ingest.rtmp_url, width=320, height=180, fps=15)
    ingest.wait_receiving()

    streams = {s["codec_type"] for s in ffprobe_json(ingest.read_url)["streams"]}
    assert streams == {"video", "audio"}

    wrong = f"{ingest.read_token}x"
    refused = {
        "no_token": ingest.anonymous_read_url,
        "wrong_token": endpoints.ingest_read_url(ingest.host, ingest.ports.rtmp, token=wrong),
        # Playing the key's name (what a publisher pushes to) gets nothing either.
        "unknown_stream": f"{endpoints.rtmp_publish_url(ingest.host, ingest.stream_key, ingest.ports.rtmp)}"
        f"?token={ingest.read_token}",
    }
    for outcome, url in refused.items():
        result = _probe(url)
        assert result.returncode != 0 and '"codec_type"' not in result.stdout, outcome
        assert _plays(ingest.metrics(), outcome) == 1, outcome
    ingest.wait_log("refused play from 127.0.0.1: wrong read token")
    log = ingest.log_text()
    assert "refused play from 127.0.0.1: no read token" in log and "no such stream" in log
    assert ingest.read_token not in log and wrong not in log and ingest.stream_key not in log
    assert _plays(ingest.metrics(), "accepted") == 1
    assert ingest.status()["receiving"], "refused readers do not disturb the publisher"


def test_without_a_read_token_file_plays_are_not_checked(ingest_agent, publishers):
    ingest = ingest_agent.start(protocols=("rtmp",), read_token=None)
    assert ingest.config.read_token_file is None and ingest.read_url == ingest.anonymous_read_url
    publishers.rtmp(ingest.rtmp_url, width=320, height=180, fps=15)
    ingest.wait_receiving()
    assert {s["codec_type"] for s in ffprobe_json(ingest.read_url)["streams"]} == {"video", "audio"}
    assert "no readTokenFile configured" in ingest.log_text()
