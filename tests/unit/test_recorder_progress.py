from onair.agent.ffmpeg_output import DISCONTINUITY_WARNINGS_PER_BLOCK, ProgressReader


def block(reader, out_time_us, progress="continue"):
    kinds = [
        reader.feed(line)
        for line in (
            "frame=10",
            "fps=30.0",
            "bitrate=N/A",
            "total_size=N/A",
            f"out_time_us={out_time_us}",
            "out_time=00:00:01.000000",
            "speed= 1.2x",
            f"progress={progress}",
        )
    ]
    assert all(k.progress for k in kinds)
    return kinds[-1]


def test_first_block_means_media_then_only_a_moving_clock_counts():
    reader = ProgressReader()
    assert block(reader, 65).advanced, "ffmpeg prints its first block only once packets flow"
    assert block(reader, 2_500_000).advanced
    assert reader.out_time_seconds == 2.5
    assert not block(reader, 2_500_000).advanced
    assert not block(reader, 1_000_000).advanced, "the clock never goes backwards"
    assert reader.out_time_seconds == 2.5


def test_not_available_out_time_is_not_progress():
    reader = ProgressReader()
    block(reader, 1_000_000)
    assert not block(reader, "N/A").advanced
    assert reader.out_time_seconds == 1.0


def test_padded_values_are_progress_lines_not_messages():
    reader = ProgressReader()
    assert reader.feed("speed= 1.7x").progress
    assert reader.last_message is None


def test_disk_full_is_recognised():
    reader = ProgressReader()
    kind = reader.feed("av_interleaved_write_frame(): No space left on device")
    assert kind.disk_full and reader.disk_full and not kind.progress
    assert reader.last_message.endswith("No space left on device")


def test_a_burst_of_backwards_timestamps_is_a_discontinuity_a_stray_one_is_not():
    line = "[segment @ 0x1] Non-monotonous DTS in output stream 0:0; previous: 56832, current: 0; changing to 56833."
    reader = ProgressReader()
    for _ in range(3):
        assert not reader.feed(line).discontinuity
        block(reader, 1_000_000)
    kinds = [reader.feed(line) for _ in range(DISCONTINUITY_WARNINGS_PER_BLOCK)]
    assert [k.discontinuity for k in kinds].count(True) == 1 and kinds[-1].discontinuity
