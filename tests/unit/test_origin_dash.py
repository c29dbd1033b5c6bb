"""MPD rewriting: UTCTiming to the origin's /time, DVR depth, tokens in segment URLs."""

import xml.etree.ElementTree as ET

import pytest

from onair.agent.origin.chunked import previous_segment
from onair.agent.origin.dash import (
    MpdError,
    UTC_TIMING_SCHEME,
    LowLatency,
    init_patterns,
    parse_duration,
    rewrite_mpd,
    time_shift_buffer_depth,
)

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
# Trimmed from ffmpeg 5.1 dashenc output (-utc_timing_url set, live)
FFMPEG_MPD = """<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
\txmlns="urn:mpeg:dash:schema:mpd:2011"
\ttype="dynamic"
\tminimumUpdatePeriod="PT1S"
\tavailabilityStartTime="2026-11-21T10:57:49.794Z"
\ttimeShiftBufferDepth="PT5.0S"
\tminBufferTime="PT2.0S">
\t<Period id="0" start="PT0.0S">
\t\t<AdaptationSet id="0" contentType="video">
\t\t\t<Representation id="0" mimeType="video/mp4" codecs="avc1.42c00c" bandwidth="615208" width="320" height="180">
\t\t\t\t<SegmentTemplate timescale="12800" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
\t\t\t\t\t<SegmentTimeline><S t="0" d="12800" r="2" /></SegmentTimeline>
\t\t\t\t</SegmentTemplate>
\t\t\t</Representation>
\t\t</AdaptationSet>
\t</Period>
\t<UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-xsdate:2014" value="https://time.akamai.com/?iso"/>
</MPD>
"""


def test_utc_timing_points_at_the_origin_only():
    out = rewrite_mpd(FFMPEG_MPD, "//origin.example/time")
    root = ET.fromstring(out.encode())
    timings = root.findall("d:UTCTiming", NS)
    assert [(t.get("schemeIdUri"), t.get("value")) for t in timings] == [(UTC_TIMING_SCHEME, "//origin.example/time")]
    assert list(root)[-1].tag.endswith("UTCTiming")  # after the Periods, as the schema orders it


def test_dvr_window_becomes_the_time_shift_buffer_depth():
    out = rewrite_mpd(FFMPEG_MPD, "/time", dvr_seconds=3600)
    assert time_shift_buffer_depth(out) == 3600
    assert out.count("timeShiftBufferDepth") == 1
    ET.fromstring(out.encode())


def test_static_mpd_gets_no_time_shift_buffer():
    static = FFMPEG_MPD.replace('type="dynamic"', 'type="static"').replace('\ttimeShiftBufferDepth="PT5.0S"\n', "")
    assert "timeShiftBufferDepth" not in rewrite_mpd(static, "/time", dvr_seconds=3600)


def test_token_goes_into_template_urls():
    out = rewrite_mpd(FFMPEG_MPD, "/time", query="token=a.b&x=1")
    template = ET.fromstring(out.encode()).find(".//d:SegmentTemplate", NS)
    assert template.get("media") == "chunk-stream$RepresentationID$-$Number%05d$.m4s?token=a.b&x=1"
    assert template.get("initialization") == "init-stream$RepresentationID$.m4s?token=a.b&x=1"


def test_not_an_mpd_is_refused():
    with pytest.raises(MpdError):
        rewrite_mpd("<html></html>", "/time")


@pytest.mark.parametrize(
    "text, seconds",
    [("PT5.0S", 5.0), ("PT1H", 3600.0), ("PT1M30S", 90.0), ("P1DT1S", 86401.0), ("PT", None), ("garbage", None)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_init_patterns_match_the_init_segments_only():
    patterns = init_patterns(FFMPEG_MPD)
    assert any(p.match("init-stream0.m4s") for p in patterns)
    assert any(p.match("init-stream12.m4s") for p in patterns)
    assert not any(p.match("chunk-stream0-00001.m4s") for p in patterns)


def test_renditions_with_their_own_init_segments_are_not_bitstream_switchable():
    # What ffmpeg's dash muxer writes on every AdaptationSet of a ladder whose rungs differ in
    # profile and parameter sets (each has its own init segment): stock dash.js then appended a
    # new rung's media after the old rung's init and failed on its first switch up.
    ladder = FFMPEG_MPD.replace(
        'contentType="video">',
        'contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true">',
    )
    out = rewrite_mpd(ladder, "/time")
    assert 'bitstreamSwitching="false"' in out and 'bitstreamSwitching="true"' not in out
    assert 'segmentAlignment="true"' in out


# ffmpeg 5.1 dashenc, live, -streaming 1 -ldash 1 -use_timeline 0 -frag_type duration -frag_duration 0.2
FFMPEG_LL_MPD = """<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
\txmlns="urn:mpeg:dash:schema:mpd:2011"
\ttype="dynamic"
\tminimumUpdatePeriod="PT500S"
\tavailabilityStartTime="2026-12-06T10:27:01.163Z"
\ttimeShiftBufferDepth="PT5.0S"
\tmaxSegmentDuration="PT1.0S"
\tminBufferTime="PT1.0S">
\t<ProgramInformation>
\t</ProgramInformation>
\t<ServiceDescription id="0">
\t</ServiceDescription>
\t<Period id="0" start="PT0.0S">
\t\t<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true">
\t\t\t<Representation id="0" mimeType="video/mp4" codecs="avc1.64000d" bandwidth="358808" width="320" height="180">
\t\t\t\t<SegmentTemplate timescale="1000000" duration="1000000" availabilityTimeOffset="0.800" availabilityTimeComplete="false" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
\t\t\t\t</SegmentTemplate>
\t\t\t</Representation>
\t\t</AdaptationSet>
\t\t<AdaptationSet id="1" contentType="audio">
\t\t\t<Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="96000">
\t\t\t\t<SegmentTemplate timescale="48000" duration="48000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
\t\t\t\t</SegmentTemplate>
\t\t\t</Representation>
\t\t</AdaptationSet>
\t</Period>
</MPD>
"""


def _templates(root):
    return root.findall(".//d:SegmentTemplate", NS)


def test_low_latency_mpd_announces_chunks_a_latency_target_and_the_origin_clock():
    ll = LowLatency.for_chunks(0.25)
    root = ET.fromstring(rewrite_mpd(FFMPEG_LL_MPD, "//origin.example/time", low_latency=ll).encode())
    # A segment may be asked for once its first chunk exists: a segment minus one chunk early.
    assert [(t.get("availabilityTimeOffset"), t.get("availabilityTimeComplete")) for t in _templates(root)] == [
        ("0.750", "false"),
        ("0.750", "false"),
    ]
    services = root.findall("d:ServiceDescription", NS)
    assert len(services) == 1  # ffmpeg's empty one replaced, not added to
    latency = services[0].find("d:Latency", NS)
    assert latency is not None and int(latency.get("target")) == round(ll.target_seconds * 1000)
    assert int(latency.get("min")) < int(latency.get("target")) < int(latency.get("max"))
    rate = services[0].find("d:PlaybackRate", NS)
    assert rate is not None and float(rate.get("min")) < 1 < float(rate.get("max"))
    children = [el.tag.rpartition("}")[2] for el in root]
    assert children.index("ServiceDescription") < children.index("Period")  # schema order
    # ffmpeg's 500 s would hide a transcoder restart (new names, new availabilityStartTime) for minutes.
    assert root.get("minimumUpdatePeriod") == "PT1.0S"
    assert [t.get("value") for t in root.findall("d:UTCTiming", NS)] == ["//origin.example/time"]


def test_the_latency_target_follows_the_chunk_duration():
    assert LowLatency.for_chunks(0.2).target_seconds == pytest.approx(3 * 0.2 + 0.1)
    assert LowLatency.for_chunks(0.5).target_seconds > LowLatency.for_chunks(0.2).target_seconds


def test_low_latency_offset_from_a_segment_timeline_when_there_is_no_fixed_duration():
    root = ET.fromstring(rewrite_mpd(FFMPEG_MPD, "//o/time", low_latency=LowLatency.for_chunks(0.2)).encode())
    assert [t.get("availabilityTimeOffset") for t in _templates(root)] == ["0.800"]  # d=12800 at 12800/s


def test_normal_and_ended_mpds_carry_no_low_latency_signalling():
    for text, ll in (
        (FFMPEG_LL_MPD.replace('type="dynamic"', 'type="static"'), LowLatency.for_chunks(0.2)),
        (FFMPEG_MPD, None),
    ):
        root = ET.fromstring(rewrite_mpd(text, "//o/time", low_latency=ll).encode())
        assert root.find("d:ServiceDescription/d:Latency", NS) is None
    root = ET.fromstring(rewrite_mpd(FFMPEG_MPD, "//o/time").encode())
    assert all(t.get("availabilityTimeComplete") is None for t in _templates(root))


def test_previous_segment_keeps_the_number_width():
    assert previous_segment("dash/run_0_000010.m4s") == "dash/run_0_000009.m4s"
    assert previous_segment("dash/run_0_000000.m4s") is None
    assert previous_segment("dash/manifest.mpd") is None


def test_a_standard_live_mpd_asks_players_to_stay_two_segments_behind():
    # ffmpeg says one segment (its SegmentTimeline's edge): stock dash.js then ran dry at every
    # segment boundary. The segments of FFMPEG_MPD are 1 s long.
    one_segment = FFMPEG_MPD.replace('type="dynamic"', 'type="dynamic" suggestedPresentationDelay="PT1S"')
    for mpd in (FFMPEG_MPD, one_segment):
        root = ET.fromstring(rewrite_mpd(mpd, "/time"))
        assert root.get("suggestedPresentationDelay") == "PT2.0S"
    # Low latency: the ServiceDescription's target is what players follow.
    ll = ET.fromstring(rewrite_mpd(FFMPEG_LL_MPD, "/time", low_latency=LowLatency.for_chunks(0.2)))
    assert ll.get("suggestedPresentationDelay") is None


def test_the_first_mpd_of_a_young_stream_waits_until_players_can_start_behind_the_edge():
    from datetime import datetime

    from onair.agent.origin.dash import MAX_YOUNG_STREAM_WAIT_SECONDS, young_stream_wait

    mpd = rewrite_mpd(FFMPEG_MPD, "/time")  # 1 s segments, two of them as presentation delay
    started = datetime.fromisoformat("2026-11-21T10:57:49.794+00:00").timestamp()
    # Old enough once the delay and one more segment exist: 3 s after availabilityStartTime.
    assert young_stream_wait(mpd, started + 0.5) == pytest.approx(2.5)
    assert young_stream_wait(mpd, started + 3.0) == 0.0
    assert young_stream_wait(mpd, started + 600) == 0.0
    assert young_stream_wait(mpd.replace('type="dynamic"', 'type="static"'), started) == 0.0
    slow = mpd.replace('suggestedPresentationDelay="PT2.0S"', 'suggestedPresentationDelay="PT60.0S"')
    assert young_stream_wait(slow, started) == MAX_YOUNG_STREAM_WAIT_SECONDS
