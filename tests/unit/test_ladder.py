from fractions import Fraction

import pytest

from onair.api.agent import Rung
from onair.render.ladder import (
    LadderError,
    build_ladder,
    default_bitrates,
    display_aspect,
    even,
    fit_ladder,
    parse_track,
    sample_aspect_ratio,
)


def sizes(rungs):
    return [(r.name, r.width, r.height) for r in rungs]


def test_1080p_source_gets_the_standard_ladder_biggest_first():
    rungs = build_ladder(["360p", "1080p", "480p", "720p"], 1920, 1080, 30)
    assert sizes(rungs) == [("1080p", 1920, 1080), ("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)]
    assert [r.video_bitrate_kbps for r in rungs] == sorted((r.video_bitrate_kbps for r in rungs), reverse=True)
    assert all(r.fps is None and not r.passthrough for r in rungs)


def test_never_upscales():
    rungs = build_ladder(["1080p", "720p", "480p", "360p"], 1280, 720)
    assert [r.name for r in rungs] == ["720p", "480p", "360p"]


def test_a_source_smaller_than_every_track_becomes_the_only_rung():
    rungs = build_ladder(["1080p", "720p"], 426, 240)
    assert sizes(rungs) == [("240p", 426, 240)]


def test_dimensions_are_even_and_keep_the_aspect_ratio():
    for w, h in [(1920, 1080), (1440, 1080), (2560, 1080), (1366, 768), (1000, 562), (720, 1280)]:
        for rung in build_ladder(["720p", "480p", "360p", "240p"], w, h):
            assert rung.width % 2 == 0 and rung.height % 2 == 0
            assert abs(rung.width / rung.height - w / h) < 0.02, (w, h, rung)


def test_odd_source_dimensions_round_to_even():
    (rung,) = build_ladder(["1080p"], 1279, 719)
    assert (rung.width, rung.height) == (1280, 720)


def test_portrait_tracks_name_the_short_side():
    rungs = build_ladder(["720p", "360p"], 1080, 1920)
    assert sizes(rungs) == [("720p", 720, 1280), ("360p", 360, 640)]


def test_source_passthrough_rung_keeps_the_source_size_and_comes_last():
    rungs = build_ladder(["source", "720p"], 1920, 1080, 30, source_bitrate_kbps=6000)
    assert sizes(rungs) == [("720p", 1280, 720), ("source", 1920, 1080)]
    assert rungs[-1].passthrough and rungs[-1].video_bitrate_kbps == 6000


def test_fps_suffix_caps_the_rate_and_higher_rates_cost_more_bits():
    r60 = build_ladder(["720p"], 1280, 720, 60)[0]
    r30 = build_ladder(["720p30"], 1280, 720, 60)[0]
    assert r60.fps is None and r30.fps == 30
    assert r60.video_bitrate_kbps > r30.video_bitrate_kbps
    # A cap above the source rate does nothing.
    assert build_ladder(["720p60"], 1280, 720, 30)[0].fps is None


def test_duplicates_collapse():
    rungs = build_ladder(["720p", "720p", "1080p"], 1280, 720)
    assert [r.name for r in rungs] == ["720p"]


def test_empty_track_list_means_the_default_ladder():
    assert [r.name for r in build_ladder([], 1920, 1080)] == ["1080p", "720p", "480p", "360p"]


@pytest.mark.parametrize("bad", ["720", "hd", "p720", "720p6000", "99999p"])
def test_unknown_track_names_are_a_clear_error(bad):
    with pytest.raises(LadderError, match="quality track"):
        build_ladder([bad], 1920, 1080)


def test_parse_track():
    assert parse_track("720p") == (720, None)
    assert parse_track(" 1080P60 ") == (1080, 60.0)


def test_bitrates_interpolate_between_table_entries():
    assert default_bitrates(720) == (2800, 128)
    low, _ = default_bitrates(600)
    assert default_bitrates(540)[0] < low < default_bitrates(720)[0]
    assert default_bitrates(100)[0] >= 100


def test_even():
    assert [even(x) for x in (0, 1, 3, 853.3, 854.9, 1080)] == [2, 2, 4, 854, 854, 1080]


def test_fit_ladder_recomputes_widths_for_the_real_source_and_drops_upscales():
    configured = build_ladder(["1080p", "720p", "480p", "source"], 1920, 1080)
    fitted = fit_ladder(configured, 1440, 1080 * 1440 // 1920 * 4 // 3)  # 1440x1080, 4:3
    assert sizes(fitted) == [("1080p", 1440, 1080), ("720p", 960, 720), ("480p", 640, 480), ("source", 1440, 1080)]
    fitted = fit_ladder(configured, 640, 360)
    assert sizes(fitted) == [("360p", 640, 360), ("source", 640, 360)]
    assert fitted[0].video_bitrate_kbps == build_ladder(["360p"], 640, 360)[0].video_bitrate_kbps


def test_fit_ladder_keeps_names_and_bitrates_of_rungs_that_fit():
    configured = [Rung(name="hd", width=1280, height=720, video_bitrate_kbps=1234)]
    (rung,) = fit_ladder(configured, 1920, 1080)
    assert (rung.name, rung.width, rung.height, rung.video_bitrate_kbps) == ("hd", 1280, 720, 1234)


def test_sample_aspect_ratio_makes_every_rung_display_alike():
    rungs = build_ladder(["1080p", "720p", "480p", "360p"], 1920, 1080)
    dar = display_aspect(rungs)
    assert dar == Fraction(16, 9)
    sars = {r.name: sample_aspect_ratio(r, dar) for r in rungs}
    assert sars["1080p"] == sars["720p"] == sars["360p"] == 1
    assert sars["480p"] == Fraction(1280, 1281)
    for r in rungs:
        assert Fraction(r.width, r.height) * sars[r.name] == dar
