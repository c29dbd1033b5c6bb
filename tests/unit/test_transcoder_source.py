import pytest

from onair.agent.ffmpeg_output import InputProbe, parse_speed, parse_video_stream
from onair.agent.transcoder.source import Decision, PullRotation, SourceSelector


def _feed(sel, name, start, end, step=0.1):
    t = start
    while t <= end + 1e-9:
        sel.data(name, t, ready=True)
        t += step


def test_main_preferred_backup_when_main_goes_silent():
    sel = SourceSelector(["main", "backup"], freeze_seconds=1.0, return_seconds=3.0)
    _feed(sel, "main", 0, 5)
    _feed(sel, "backup", 0, 10)
    assert sel.decide(None, 5) == Decision("main")
    assert sel.decide("main", 5.9) == Decision("main")  # silent for 0.9 s: not yet
    assert sel.decide("main", 6.1) == Decision("backup", immediate=True)


def test_a_restarted_reader_is_unhealthy_until_it_delivers_again():
    sel = SourceSelector(["main", "backup"])
    _feed(sel, "main", 0, 2)
    _feed(sel, "backup", 0, 2)
    sel.restarted("main")  # reader EOF: no need to wait for the freeze timeout
    assert sel.decide("main", 2.0) == Decision("backup", immediate=True)


def test_main_returns_only_after_the_hysteresis_and_at_a_keyframe():
    sel = SourceSelector(["main", "backup"], freeze_seconds=1.0, return_seconds=3.0)
    _feed(sel, "backup", 0, 20)
    _feed(sel, "main", 10, 12.9)
    assert sel.decide("backup", 12.9) == Decision("backup")
    _feed(sel, "main", 13.0, 14)
    assert sel.decide("backup", 14) == Decision("main", immediate=False)


def test_a_flapping_main_restarts_its_hysteresis():
    sel = SourceSelector(["main", "backup"], freeze_seconds=1.0, return_seconds=3.0)
    _feed(sel, "backup", 0, 20)
    _feed(sel, "main", 10, 12)
    _feed(sel, "main", 13.5, 15)  # a 1.5 s hole at 12..13.5
    assert sel.decide("backup", 15) == Decision("backup")
    _feed(sel, "main", 15.1, 16.6)
    assert sel.decide("backup", 16.6) == Decision("main", immediate=False)


def test_not_ready_data_does_not_count():
    sel = SourceSelector(["main"])
    sel.data("main", 0, ready=False)
    assert sel.decide(None, 0) == Decision(None)
    sel.data("main", 0.1, ready=True)
    assert sel.decide(None, 0.1) == Decision("main")


def test_without_viewers_the_best_source_wins_at_once():
    sel = SourceSelector(["main", "backup"], return_seconds=3.0)
    _feed(sel, "backup", 0, 1)
    _feed(sel, "main", 0.9, 1)
    assert sel.decide("backup", 1, hysteresis=False) == Decision("main", immediate=True)
    assert sel.decide("backup", 1) == Decision("backup")


def test_nothing_healthy_means_no_target():
    sel = SourceSelector(["main", "backup"])
    _feed(sel, "main", 0, 1)
    assert sel.decide("main", 5) == Decision(None)


def test_pull_rotation_is_round_robin():
    rotation = PullRotation(["a", "b", "c"])
    assert rotation.current == "a"
    assert [rotation.failed() for _ in range(4)] == ["b", "c", "a", "b"]
    assert rotation.failures == 4


def test_speed_from_stats_and_progress_lines():
    assert (
        parse_speed("frame=  152 fps= 30 q=28.0 size=N/A time=00:00:05.01 bitrate=N/A dup=2 drop=0 speed=0.984x")
        == 0.984
    )
    assert parse_speed("speed=1.02x") == 1.02
    assert parse_speed("speed=N/A") is None
    assert parse_speed("[hls @ 0x1] Opening 'x' for writing") is None


def test_input_probe_reads_the_input_section_only():
    probe = InputProbe()
    lines = [
        "Input #0, flv, from 'rtmp://127.0.0.1:1935/live/stream':",
        "  Stream #0:0: Audio: aac (LC), 48000 Hz, stereo, fltp, 128 kb/s",
        "  Stream #0:1: Video: h264 (High), yuv420p(progressive), 1920x1080 [SAR 1:1 DAR 16:9], 29.97 fps, 29.97 tbr, 1k tbn",
        "Output #0, mpegts, to 'pipe:1':",
        "  Stream #0:0: Video: h264 (High), yuv420p(progressive), 640x360, q=2-31, 25 fps, 90k tbn",
    ]
    for line in lines:
        probe.feed(line)
    assert probe.video is not None
    assert (probe.video.codec, probe.video.width, probe.video.height) == ("h264", 1920, 1080)
    assert probe.video.fps == 30000 / 1001
    assert probe.audio_codec == "aac"


def test_video_stream_without_fps_and_with_tbr_only():
    video = parse_video_stream(
        "Stream #0:0[0x100]: Video: h264 (Main) ([27][0][0][0] / 0x001B), yuv420p(tv, bt709), 1280x720, 50 tbr, 90k tbn"
    )
    assert (video.width, video.height, video.fps) == (1280, 720, 50.0)
    assert parse_video_stream("Stream #0:0: Audio: aac") is None


@pytest.mark.parametrize(
    "figures, rate",
    [
        # A live RTMP input at 30000/1001: whole-millisecond FLV timestamps, with or without metadata.
        ("29 fps, 29.97 tbr", 30000 / 1001),
        ("30.30 fps, 29.92 tbr", 30000 / 1001),
        ("30.30 fps, 30 tbr", 30.0),
        ("23.98 fps, 23.98 tbr", 24000 / 1001),
        ("59.94 fps, 59.94 tbr", 60000 / 1001),
        ("25 fps, 50 tbr", 25.0),  # interlaced: fields in tbr, frames in fps
        ("17 fps, 17 tbr", 17.0),  # a rate of its own (screen capture): as printed
        ("1k fps, 1k tbr", 1000.0),
    ],
)
def test_the_frame_rate_is_the_standard_rate_ffmpegs_estimates_point_to(figures, rate):
    video = parse_video_stream(f"Stream #0:0: Video: h264 (High), yuv420p(progressive), 1280x720, {figures}, 1k tbn")
    assert video is not None and video.fps == pytest.approx(rate, rel=1e-9)


def test_next_change_is_when_a_silent_source_would_be_declared_frozen():
    sel = SourceSelector(["main", "backup"], freeze_seconds=1.0, return_seconds=3.0)
    assert sel.next_change(0.0) is None  # nothing healthy: only new data can change anything
    _feed(sel, "main", 0, 5)
    due = sel.next_change(5.0)
    assert due is not None and 6.0 < due < 6.01
    # Just before the due time the decision still holds; just after it, it changed.
    assert sel.decide("main", due - 0.002) == Decision("main")
    _feed(sel, "backup", 5, 7)
    assert sel.decide("main", due) == Decision("backup", immediate=True)


def test_next_change_includes_a_recovering_source_becoming_stable():
    sel = SourceSelector(["main", "backup"], freeze_seconds=1.0, return_seconds=3.0)
    _feed(sel, "backup", 0, 10)
    _feed(sel, "main", 9.5, 10)  # healthy since 9.5: stable at 12.5, if it keeps delivering
    assert abs(sel.next_change(10.0) - 11.001) < 1e-6  # both go silent first without new data
    _feed(sel, "main", 10.1, 12.0)
    _feed(sel, "backup", 10.1, 12.0)
    assert abs(sel.next_change(12.0) - 12.5) < 1e-6
