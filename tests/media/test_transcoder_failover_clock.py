"""A failover neither repeats content nor adds latency, read frame by frame off the output.

One camera feeding two encoders: two cameras (bench/g2g/camera.py) paint the same clock (the
wall clock at capture) into every frame and push main and backup with OBS's x264 settings
(B-frames, lookahead, 2 s GOP). Main's encoder is killed; later it comes back and takes over again.
Every frame of the public CMAF rendition is decoded and its clock read (bench/g2g/splice.py).

Bounds. The new source can only start at one of its keyframes, and a keyframe older than the last
frame viewers saw would show content again (and keep every viewer that much further behind, for
good), so the switch may have to wait for the next one: at most one GOP of the new source's picture
is skipped (the last picture stays on screen meanwhile), plus a frame. Nothing may be repeated and
the latency may not grow, beyond what telling two sources' frames apart by their arrival allows:
one frame interval plus the relay's reading in chunks (``READ_INTERVAL_SECONDS``, 100 ms, on each of
the two sources). Everything compares content timestamps with media timestamps: no wall-clock timing.
"""

from __future__ import annotations

import pytest

from bench.g2g.splice import FRAME_MS, failover_and_return

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(300)]
RUNG = "180p"
WIDTH, HEIGHT, GOP_SECONDS = 320, 180, 2.0
REPEAT_BOUND_MS = FRAME_MS + 2 * 100
SKIP_BOUND_MS = GOP_SECONDS * 1000 + FRAME_MS + 2 * 100


def test_failover_and_return_neither_repeat_content_nor_add_latency(rtmp_server, transcoder_agent):
    tx = transcoder_agent.start(
        main_url=rtmp_server.url("main"),
        backup_url=rtmp_server.url("backup"),
        tracks=[RUNG],
        source_size=(WIDTH, HEIGHT),
        hls_mpegts=False,
        dash=False,
        screenshot_interval_seconds=0,
        segment_seconds=1.0,
        return_seconds=2.0,
    )
    # Main is killed 12 frames before the backup's next keyframe: its cached keyframe then holds
    # about 1.6 s of capture that viewers already saw from main.
    switches = failover_and_return(
        tx, rtmp_server.url, RUNG, width=WIDTH, height=HEIGHT, gop_seconds=GOP_SECONDS, kill_frames_before_key=12
    )
    for switch, figures in switches.items():
        print(f"{switch}: {figures}")
    for switch, figures in switches.items():
        assert figures.repeat_ms <= REPEAT_BOUND_MS, f"{switch}: content repeated ({figures})"
        assert figures.skip_ms <= SKIP_BOUND_MS, f"{switch}: more than a GOP skipped ({figures})"
        assert figures.latency_shift_ms <= REPEAT_BOUND_MS, f"{switch}: latency added ({figures})"
