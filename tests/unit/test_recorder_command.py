import pytest

from onair.agent.recorder.command import RecordingRun, ffmpeg_argv
from onair.agent.recorder.hls import HlsSource


def option(argv, name):
    return argv[argv.index(name) + 1]


def test_rtmp_run_copies_into_split_fragmented_mp4():
    argv = ffmpeg_argv(
        RecordingRun(
            output_pattern="/rec/x_part%04d.mp4",
            split_seconds=14400,
            start_number=3,
            rtmp_url="rtmp://ingest:1935/live/stream",
        )
    )
    assert option(argv, "-i") == "rtmp://ingest:1935/live/stream"
    assert option(argv, "-c") == "copy"
    assert "-c:v" not in argv and "libx264" not in argv, "origin recordings are never re-encoded"
    assert option(argv, "-f") == "segment" and option(argv, "-segment_format") == "mp4"
    assert option(argv, "-segment_time") == "14400"
    assert option(argv, "-segment_start_number") == "3"
    assert option(argv, "-reset_timestamps") == "1"
    movflags = option(argv, "-segment_format_options")
    for flag in ("frag_keyframe", "empty_moov", "default_base_moof"):
        assert f"+{flag}" in movflags
    assert "frag_duration=" in movflags
    assert "flush_packets=1" in movflags, "each finished fragment must reach the file at once"
    assert argv[-1] == "/rec/x_part%04d.mp4"
    assert option(argv, "-progress") == "pipe:1"


def test_hls_with_separate_audio_maps_both_inputs():
    run = RecordingRun(
        output_pattern="p%04d.mp4",
        split_seconds=10,
        start_number=1,
        hls=HlsSource("http://o/v720.m3u8", "http://o/a.m3u8"),
        hls_live_start_index=-1,
    )
    argv = ffmpeg_argv(run)
    inputs = [argv[i + 1] for i, a in enumerate(argv) if a == "-i"]
    assert inputs == ["http://o/v720.m3u8", "http://o/a.m3u8"]
    maps = [argv[i + 1] for i, a in enumerate(argv) if a == "-map"]
    assert maps == ["0:v:0", "1:a:0"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-live_start_index"] == ["-1", "-1"]


def test_muxed_sources_map_optionally_so_audio_less_streams_still_record():
    argv = ffmpeg_argv(
        RecordingRun(output_pattern="p%04d.mp4", split_seconds=10, start_number=1, hls=HlsSource("http://o/v.m3u8"))
    )
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-map"] == ["0:v:0?", "0:a:0?"]


def test_a_run_needs_a_source_and_a_positive_split():
    with pytest.raises(ValueError):
        ffmpeg_argv(RecordingRun(output_pattern="p%04d.mp4", split_seconds=10, start_number=1))
    with pytest.raises(ValueError):
        ffmpeg_argv(RecordingRun(output_pattern="p%04d.mp4", split_seconds=0, start_number=1, rtmp_url="rtmp://x/a/b"))


def test_every_input_is_probed_briefly_and_the_first_media_timeout_covers_the_probe():
    from onair.agent.recorder.command import first_media_timeout_seconds

    for run in (
        RecordingRun(output_pattern="p%04d.mp4", split_seconds=10, start_number=1, rtmp_url="rtmp://i/live/s"),
        RecordingRun(
            output_pattern="p%04d.mp4",
            split_seconds=10,
            start_number=1,
            hls=HlsSource("http://o/v.m3u8", "http://o/a.m3u8"),
        ),
    ):
        argv = ffmpeg_argv(run)
        inputs = [i for i, a in enumerate(argv) if a == "-i"]
        for at in inputs:
            # Input options apply to the next -i only.
            before = argv[:at][-6:]
            assert option(before, "-fpsprobesize") == "0", "stream copy never needs the frame rate"
            analyze = int(option(before, "-analyzeduration")) / 1_000_000
            assert 0 < analyze <= 3
        stats_period = float(option(argv, "-stats_period"))
        assert first_media_timeout_seconds(3) >= 3 + analyze + stats_period


def test_the_read_token_goes_in_a_header_of_every_hls_input_and_nowhere_else():
    run = RecordingRun(
        output_pattern="p%04d.mp4",
        split_seconds=10,
        start_number=1,
        hls=HlsSource("http://o/v.m3u8", "http://o/a.m3u8"),
        bearer_token="r3ad",
    )
    argv = ffmpeg_argv(run)
    headers = [argv[i + 1] for i, a in enumerate(argv) if a == "-headers"]
    assert headers == ["Authorization: Bearer r3ad\r\n"] * 2
    assert all(argv.index("-headers", at) < argv.index("-i", at) for at in (0, argv.index("-i") + 1))
    assert not any("r3ad" in a for a in argv if not a.startswith("Authorization:"))
    plain = ffmpeg_argv(
        RecordingRun(output_pattern="p%04d.mp4", split_seconds=10, start_number=1, hls=HlsSource("http://o/v.m3u8"))
    )
    assert "-headers" not in plain
