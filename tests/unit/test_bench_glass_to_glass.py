"""The pure parts of bench/glass_to_glass.py: what one player's page results become."""

from __future__ import annotations

from bench import glass_to_glass as g2g


def test_summarize_keeps_only_samples_after_the_settling_time():
    opened, first = 1_000_000.0, 1_002_000.0
    samples = [{"shown": first + 100 * i, "latency": 5.0 if i < 50 else 2.0 + i / 1000} for i in range(200)]
    figures = g2g.summarize(
        {
            "openedAt": opened,
            "firstFrameAt": first,
            "samples": samples,
            "unreadable": 3,
            "stalls": 1,
            "errors": [],
            "pdtOffsets": [0.5, 0.7, 0.6],
        },
        settle_seconds=5,
    )
    assert figures["startup"] == 2.0
    assert figures["samples"] == 150 and figures["min"] == 2.05 and figures["max"] == 2.199
    assert abs(figures["p50"] - 2.1245) < 1e-9 and abs(figures["p95"] - 2.192) < 1e-9
    assert figures["pdt_offset"] == 0.6 and figures["unreadable"] == 3 and figures["stalls"] == 1


def test_a_player_that_never_showed_a_frame_has_no_figures():
    figures = g2g.summarize({"openedAt": 1.0, "firstFrameAt": None, "samples": [], "errors": ["x"]}, 5)
    assert figures["startup"] is None and figures["samples"] == 0 and "p50" not in figures
    assert "-" in g2g.row("dash (dash)", figures)


def test_the_low_latency_tier_is_a_livestream_override_played_in_lowlatency_mode():
    assert g2g.livestream_spec(False, 200) == {"callType": "livestream", "phase": "live"}
    assert g2g.livestream_spec(True, 333)["settingsOverride"] == {
        "broadcasting": {"lowLatency": True, "partDurationMs": 333}
    }
    assert g2g.player_for("hlsCmaf", True) == "hls-ll" and g2g.player_for("hlsCmaf", False) == "hls"
    assert g2g.player_for("dash", True) == "dash-ll" and g2g.player_for("dash", False) == "dash"
    assert g2g.player_for("hlsMpegts", True) == "hls"


def test_dashjs_low_latency_mode_gets_the_player_pages_settings():
    query = g2g.page_query("dash-ll", 200)
    assert "liveDelay=0.700" in query and "rateMin=-0.040" in query and "rateMax=0.040" in query
    assert g2g.page_query("dash", 200) == "" and g2g.page_query("hls", 200) == ""


def test_hlsjs_low_latency_mode_gets_the_player_pages_catch_up_rate_unless_told_otherwise():
    assert g2g.page_query("hls-ll", 200) == f"&maxRate={g2g.LL_HLS_MAX_PLAYBACK_RATE:g}"
    assert g2g.page_query("hls-ll", 200, hls_max_rate=1) == "&maxRate=1"


def test_drift_is_how_fast_latency_grows_per_minute_while_sampled():
    first = 1_000_000.0
    # 0.5 s more latency over 100 s of samples: 0.3 s per minute.
    samples = [{"shown": first + 1000 * i, "latency": 2.0 + 0.005 * i} for i in range(101)]
    figures = g2g.summarize({"openedAt": first, "firstFrameAt": first, "samples": samples}, settle_seconds=0)
    assert abs(figures["drift"] - 0.3) < 1e-9
    steady = g2g.summarize(
        {"openedAt": first, "firstFrameAt": first, "samples": [{**s, "latency": 2.0} for s in samples]}, 0
    )
    assert steady["drift"] == 0


def test_the_standard_tier_can_be_measured_with_short_segments_and_zero_latency_encoding():
    spec = g2g.livestream_spec(False, 200, segment_seconds=1, zero_latency_encoding=True)
    assert spec["settingsOverride"] == {"broadcasting": {"segmentDurationSeconds": 1, "zeroLatencyEncoding": True}}
    assert "settingsOverride" not in g2g.livestream_spec(False, 200)
