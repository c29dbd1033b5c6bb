from onair.agent.transcoder.ffmpeg_args import (
    SCREENSHOT,
    EncoderPlan,
    encoder_args,
    filter_graph,
    frame_rate,
    gop_frames,
    reader_args,
    tee_value,
    var_stream_map,
)
from onair.render.ladder import build_ladder


def _plan(**kw):
    rungs = kw.pop("rungs", None) or build_ladder(["1080p", "720p", "480p"], 1920, 1080, 30)
    return EncoderPlan(rungs=rungs, run_id="20260101T000000-abcd", fps=30, **kw)


def _after(args, flag):
    return args[args.index(flag) + 1]


def test_reader_remuxes_video_first_to_a_pipe_and_only_times_out_where_it_can():
    args = reader_args("rtmp://ingest:1935/live/stream")
    assert _after(args, "-i") == "rtmp://ingest:1935/live/stream"
    assert args[args.index("-map") : args.index("-map") + 4] == ["-map", "0:v:0", "-map", "0:a:0?"]
    assert _after(args, "-c") == "copy" and _after(args, "-f") == "mpegts" and args[-1] == "pipe:1"
    assert _after(args, "-omit_video_pes_length") == "0", "complete frames say so: nobody waits for the next"
    assert "-rw_timeout" in args
    assert "-rw_timeout" not in reader_args("srt://host:9000?mode=caller")


def test_rtmp_reader_probes_briefly_and_keeps_the_probed_keyframe():
    args = reader_args("rtmp://ingest:1935/live/stream")
    before_input = args[: args.index("-i")]
    assert _after(before_input, "-fpsprobesize") == "0", "FLV metadata carries the rate; copy never needs it"
    assert 0 < int(_after(before_input, "-analyzeduration")) <= 1_000_000, "0 would mean ffmpeg's 5 s default"
    assert "nobuffer" not in " ".join(args), "nobuffer drops the packets read while probing: the first keyframe"
    # Other protocols carry no such metadata: ffmpeg's own probing stays.
    assert "-fpsprobesize" not in reader_args("srt://host:9000?mode=caller")


def test_every_rung_gets_its_own_scale_sar_and_the_screenshot_is_1080_wide():
    graph = filter_graph(_plan())
    assert graph.startswith("[0:v:0]split=4[s0][s1][s2][s3]")
    assert "[s0]scale=1920:1080,setsar=sar=1/1:max=1000000,format=yuv420p[v0]" in graph
    assert "[s2]scale=854:480,setsar=sar=1280/1281:max=1000000" in graph
    assert "[s3]fps=1/10,scale=1080:-2,setsar=1[shot]" in graph


def test_keyframes_on_segment_boundaries_in_every_rung_with_per_stream_profiles():
    args = encoder_args(_plan(segment_seconds=1))
    for i in range(3):
        assert _after(args, f"-force_key_frames:v:{i}") == "expr:gte(t,n_forced*1)"
        assert _after(args, f"-g:v:{i}") == "30" and _after(args, f"-sc_threshold:v:{i}") == "0"
        assert f"-profile:v:{i}" in args
    assert _after(args, "-profile:v:0") == "high" and _after(args, "-profile:v:2") == "main"
    assert "-profile:v" not in args  # a bare one would also hit a copied rung


def test_passthrough_rung_is_copied_without_profile_and_kept_out_of_dash():
    rungs = build_ladder(["720p", "source"], 1920, 1080, 30)
    args = encoder_args(_plan(rungs=rungs))
    assert _after(args, "-c:v:1") == "copy" and "-profile:v:1" not in args
    assert args[args.index("[v0]") + 2] == "0:v:0"  # the copied rung maps the input directly
    tee = _after(args, "tee")
    assert "select=\\'v:0,a:0\\'" in tee


def test_tee_carries_cmaf_ts_and_dash_with_run_ids_in_every_name():
    plan = _plan()
    tee = _after(encoder_args(plan), "tee")
    cmaf, ts, dash = tee.split("|")
    assert cmaf.startswith("[f=hls:") and "hls_segment_type=fmp4" in cmaf
    assert "hls_segment_filename=hls/cmaf/%v/20260101T000000-abcd_%06d.m4s" in cmaf
    assert "hls_fmp4_init_filename=20260101T000000-abcd_init_%v.mp4" in cmaf
    assert cmaf.endswith("]hls/cmaf/%v/20260101T000000-abcd.m3u8")
    assert "hls_segment_type=mpegts" in ts and ts.endswith("]hls/ts/%v/20260101T000000-abcd.m3u8")
    assert "var_stream_map=\\'v:0,a:0,name:1080p v:1,a:1,name:720p v:2,a:2,name:480p\\'" in cmaf
    assert "omit_endlist" in cmaf and "temp_file" in cmaf
    assert dash.startswith("[f=dash:") and "ldash" not in dash
    assert "media_seg_name=\\'20260101T000000-abcd_$RepresentationID$_$Number%06d$.m4s\\'" in dash
    assert dash.endswith("]dash/20260101T000000-abcd.mpd")


def test_low_latency_dash_streams_chunks():
    tee = _after(encoder_args(_plan(low_latency=True, segment_seconds=1)), "tee")
    dash = tee.split("|")[2]
    assert "streaming=1" in dash and "ldash=1" in dash and "seg_duration=1" in dash


def test_low_latency_dash_writes_a_chunk_per_part_and_numbers_segments_without_a_timeline():
    tee = _after(encoder_args(_plan(low_latency=True, segment_seconds=1, part_seconds=0.2)), "tee")
    dash = tee.split("|")[2]
    assert "frag_type=duration" in dash and "frag_duration=0.200000" in dash
    # A SegmentTimeline lists a segment only once it is complete: LL-DASH players must be able
    # to ask for the one being written, by its number.
    assert "use_timeline=0" in dash
    plain = _after(encoder_args(_plan()), "tee").split("|")[2]
    assert "use_timeline=1" in plain and "frag_type" not in plain


def test_single_rung_init_name_has_no_placeholder():
    plan = _plan(rungs=build_ladder(["360p"], 640, 360))
    assert "hls_fmp4_init_filename=20260101T000000-abcd_init_360p.mp4" in _after(encoder_args(plan), "tee")


def test_packagings_can_be_switched_off_and_audio_can_be_absent():
    args = encoder_args(_plan(hls_mpegts=False, dash=False, has_audio=False, screenshot_interval_seconds=0))
    tee = _after(args, "tee")
    assert "|" not in tee and "hls_segment_type=fmp4" in tee
    assert "0:a:0" not in args and "-c:a" not in args
    assert "mjpeg" not in args and "[shot]" not in " ".join(args)
    assert var_stream_map(_plan(has_audio=False)) == "v:0,name:1080p v:1,name:720p v:2,name:480p"


def test_rung_fps_cap_goes_into_the_filter_and_the_gop():
    rungs = build_ladder(["720p", "360p30"], 1280, 720, 60)
    plan = EncoderPlan(rungs=rungs, run_id="r", fps=60)
    assert "[s1]fps=30,scale=640:360" in filter_graph(plan)
    args = encoder_args(plan)
    assert _after(args, "-g:v:0") == "120" and _after(args, "-g:v:1") == "60"


def test_tee_value_quoting():
    assert tee_value("v:0,a:0 v:1") == "\\'v:0,a:0 v:1\\'"
    for bad in ("it's", "a|b"):
        try:
            tee_value(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_gop_frames():
    assert gop_frames(29.97, 2) == 60 and gop_frames(25, 1) == 25 and gop_frames(1, 0.1) == 1


def test_encoder_probes_its_pipe_briefly_when_the_plan_knows_the_frame_rate():
    rungs = build_ladder(["720p", "source"], 1920, 1080, 30)
    args = encoder_args(_plan(rungs=rungs))
    before_input = args[: args.index("pipe:0")]
    assert 0 < int(_after(before_input, "-analyzeduration")) <= 200_000
    # ... and then the encoded rungs run at the source's rate, not at the short probe's guess.
    assert _after(args, "-r:v:0") == "30" and "-r:v:1" not in args  # the copied rung keeps its own
    unknown = encoder_args(EncoderPlan(rungs=rungs, run_id="r", fps=None))
    assert int(_after(unknown, "-analyzeduration")) >= 1_000_000 and "-r:v:0" not in unknown


def test_a_rung_with_its_own_rate_keeps_it():
    rungs = [r.model_copy(update={"fps": 30}) for r in build_ladder(["720p"], 1920, 1080, 60)]
    args = encoder_args(EncoderPlan(rungs=rungs, run_id="r", fps=60))
    assert "-r:v:0" not in args and "fps=30" in filter_graph(EncoderPlan(rungs=rungs, run_id="r", fps=60))


def test_frame_rates_are_passed_exactly():
    assert [frame_rate(x) for x in (30, 29.97, 23.976, 59.94, 25, 12.5)] == [
        "30",
        "30000/1001",
        "24000/1001",
        "60000/1001",
        "25",
        "12.5",
    ]


def test_x264_keeps_one_frame_between_lookahead_and_encoder():
    args = encoder_args(_plan())
    assert [_after(args, f"-x264-params:v:{i}") for i in range(3)] == ["sync-lookahead=1"] * 3


def test_every_encoder_overwrites_what_the_previous_run_left_under_a_fixed_name():
    args = encoder_args(_plan(screenshot_interval_seconds=10))
    assert "-y" in args[: args.index("-i")], "a global option, before the input"
    assert args[-1] == SCREENSHOT


def test_ll_hls_parts_are_whole_frames_that_divide_the_gop():
    from onair.agent.transcoder.ffmpeg_args import part_seconds

    assert part_seconds(30, 1.0, 0.2) == 0.2 and part_seconds(30, 1.0, 0.333) == 0.333333
    assert part_seconds(25, 1.0, 0.2) == 0.2 and part_seconds(60, 1.0, 0.2) == 0.2
    assert part_seconds(29.97, 1.0, 0.2) == 0.2002  # 6 frames of 1001/30000 s, rounded down
    assert part_seconds(24, 1.0, 0.2) == 0.166666  # 4 of the GOP's 24 frames (5 would not divide it)
    assert part_seconds(None, 1.0, 0.25) == 0.2  # unknown rate: 30 fps assumed
    for fps in (24, 25, 29.97, 30, 50, 60):
        seconds = part_seconds(fps, 1.0, 0.2)
        frames = seconds * fps
        assert abs(frames - round(frames + 0.001)) < 0.001 and gop_frames(fps, 1.0) % round(frames + 0.001) == 0


def test_ll_hls_cuts_cmaf_parts_on_time_without_b_frames_and_leaves_ts_alone():
    plan = _plan(low_latency=True, segment_seconds=1, part_seconds=0.2)
    args = encoder_args(plan)
    cmaf, ts, dash = _after(args, "tee").split("|")
    assert "hls_time=0.200000" in cmaf and "split_by_time" in cmaf and "independent_segments" not in cmaf
    assert "hls_time=1" in ts and "split_by_time" not in ts and "independent_segments" in ts
    assert all(_after(args, f"-bf:v:{i}") == "0" and _after(args, f"-tune:v:{i}") == "zerolatency" for i in range(3))
    assert _after(args, "-force_key_frames:v:0") == "expr:gte(t,n_forced*1)"
    assert "-bf:v:0" not in encoder_args(_plan(low_latency=True, segment_seconds=1))


def test_zero_latency_encoding_in_the_standard_tier_drops_b_frames_and_lookahead_without_cutting_parts():
    args = encoder_args(_plan(segment_seconds=1, zero_latency=True))
    assert all(_after(args, f"-bf:v:{i}") == "0" and _after(args, f"-tune:v:{i}") == "zerolatency" for i in range(3))
    cmaf = _after(args, "tee").split("|")[0]
    assert "hls_time=1" in cmaf and "split_by_time" not in cmaf and "independent_segments" in cmaf
    plain = encoder_args(_plan(segment_seconds=1))
    assert "-bf:v:0" not in plain and "zerolatency" not in plain
