"""SIGTERM while everything around the transcoder goes away too (a Livestream being deleted):
the agent must leave promptly instead of retrying uploads and restarting readers."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.fixtures.media import wait_for

pytestmark = [pytest.mark.media, pytest.mark.timeout(180)]

# A bound on a hang, not a performance figure: Kubernetes SIGKILLs a pod 30 s after SIGTERM.
EXIT_BOUND_SECONDS = 10


def test_sigterm_with_the_origin_and_the_source_gone_exits_promptly(
    rtmp_server, origins, transcoder_agent, publishers, tmp_path
):
    origin = origins.start(phase="live")
    token_file = tmp_path / "uploadToken"
    token_file.write_text(origin.upload_token + "\n")
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        tracks=["180p", "144p"],
        source_size=(320, 180),
        output_dir=None,
        output_url=origin.upload_url,
        output_token_file=str(token_file),
        screenshot_interval_seconds=2,
    )
    publisher = publishers.rtmp(rtmp_server.url("main"), width=320, height=180)
    tx.put_desired(phase="live", broadcasting=True)
    wait_for(lambda: origin.get("hls/cmaf/180p/index.m3u8").status_code == 200, 60, what="segments on the origin")

    # The whole Livestream is going away: the origin first, then the source, then SIGTERM.
    origin.stop()
    rtmp_server.stop()
    publisher.kill()
    started = time.monotonic()
    tx.proc.terminate()
    try:
        code = tx.proc.wait(EXIT_BOUND_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the transcoder was still running {EXIT_BOUND_SECONDS}s after SIGTERM; log tail:\n{tx.log_text()[-4000:]}"
        )
    print(f"transcoder exited {time.monotonic() - started:.1f}s after SIGTERM")
    assert code == 0, tx.log_text()[-3000:]
    assert not tx.pids("ffmpeg"), "an ffmpeg of the transcoder outlived it"
