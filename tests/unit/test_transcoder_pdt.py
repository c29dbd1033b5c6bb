"""Program-date-time from when frames were received: the arrival estimate (lower envelope of
chunked, late reads; pieces at splices; the 33-bit wrap), the per-run dates every rendition shares,
the relay feeding them, and the packager's fallback with its reason."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from onair.agent.transcoder.mpegts import WRAP, first_video_decode_time
from onair.agent.transcoder.pdt import ArrivalMap, ProgramDateTimes
from onair.agent.transcoder.playlists import MediaPlaylist

from tests.unit.test_transcoder_mpegts import FRAME, pat, pes, pmt, stream, VIDEO

T0 = 1_800_000_000.0  # a wall clock, Unix seconds
PATH = 0.004  # ingest -> relay, the part of the delay that is not reading in chunks


def chunked(t: float, chunk: float = 0.1013) -> float:
    """When a relay reading every ``chunk`` seconds sees bytes written at ``t``: a tenth of a
    second plus the work of a read, so the reads drift across the frames' phase as real ones do."""
    return (int(t / chunk) + 1) * chunk


def feed_live(arrivals: ArrivalMap, first_dts: int, frames: int, start_wall: float, *, stall_every: int = 0) -> None:
    for n in range(frames):
        dts = (first_dts + n * FRAME) % WRAP
        sent = start_wall + n * FRAME / 90_000 + PATH
        late = 0.25 if stall_every and n % stall_every == 0 else 0.0  # a scheduling hiccup
        arrivals.record(dts, chunked(sent) + late)


def test_the_arrival_of_a_frame_is_the_lower_envelope_of_chunked_late_reads():
    arrivals = ArrivalMap()
    feed_live(arrivals, 900_000, 300, T0, stall_every=7)
    for n in (0, 1, 45, 150, 299):
        wall, why = arrivals.lookup(900_000 + n * FRAME)
        assert why == ""
        assert wall == pytest.approx(T0 + n * FRAME / 90_000 + PATH, abs=0.003), n


def test_decode_times_wrap_at_2_to_the_33():
    arrivals = ArrivalMap()
    first = WRAP - 60 * FRAME
    feed_live(arrivals, first, 150, T0)
    for n in (10, 59, 60, 61, 120):
        wall, _ = arrivals.lookup((first + n * FRAME) % WRAP)
        assert wall == pytest.approx(T0 + n * FRAME / 90_000 + PATH, abs=0.003), n


def test_a_splice_starts_a_new_piece_and_old_frames_keep_theirs():
    arrivals = ArrivalMap()
    feed_live(arrivals, 0, 90, T0)
    # A backup spliced in at media 3 s: its frames were received 1.4 s earlier than main's
    # relation says (a cached GOP), and from then on that is the relation.
    arrivals.begin_piece(90 * FRAME)
    for n in range(90, 180):
        arrivals.record(n * FRAME, chunked(T0 + n * FRAME / 90_000 + PATH - 1.4))
    old, _ = arrivals.lookup(80 * FRAME)
    new, _ = arrivals.lookup(95 * FRAME)
    assert old == pytest.approx(T0 + 80 / 30 + PATH, abs=0.003)
    assert new == pytest.approx(T0 + 95 / 30 + PATH - 1.4, abs=0.003)


def test_no_arrival_near_a_media_time_is_said_not_guessed():
    arrivals = ArrivalMap(keep_seconds=20)
    assert arrivals.lookup(0) == (None, "no frame arrival recorded yet")
    feed_live(arrivals, 0, 30 * 60, T0)  # a minute
    wall, why = arrivals.lookup(5 * 90_000)  # slid out of what is kept
    assert wall is None and "no frame arrival recorded within 5 s" in why
    arrivals.begin_piece(100 * 90_000)
    wall, why = arrivals.lookup(99 * 90_000)
    assert wall is None and "within" in why


def dates_for(arrivals: ArrivalMap, start: int) -> ProgramDateTimes:
    dates = ProgramDateTimes(arrivals, lambda: start)
    dates.begin_run("r1")
    return dates


def test_every_rendition_gets_the_same_date_for_the_same_cut_and_dates_follow_media_time():
    arrivals = ArrivalMap()
    feed_live(arrivals, 900_000, 30 * 12, T0, stall_every=5)
    dates = dates_for(arrivals, 900_000)
    # CMAF starts its media time near 0, MPEG-TS 1.4 s later (the mpegts muxer's delay): only the
    # time since the run's first segment counts.
    cmaf = [dates.date(("cmaf", "360p"), 0.0 + 2 * k, 2.0)[0] for k in range(5)]
    ts = [dates.date(("ts", "180p"), 1.4 + 2 * k, 2.0)[0] for k in range(5)]
    assert cmaf == ts
    assert cmaf[0] is not None
    assert cmaf[0].timestamp() == pytest.approx(T0 + PATH, abs=0.003)
    assert all(b - a == timedelta(seconds=2) for a, b in zip(cmaf, cmaf[1:]))  # type: ignore[operator]


def test_dates_move_forward_after_an_outage_and_hold_when_older_frames_are_spliced_in(caplog):
    arrivals = ArrivalMap()
    feed_live(arrivals, 0, 120, T0)  # 4 s of main
    # Main dies; the backup's keyframe comes 3 s of wall clock later, continuing the media timeline.
    arrivals.begin_piece(120 * FRAME)
    for n in range(120, 240):
        arrivals.record(n * FRAME, chunked(T0 + n / 30 + 3.0 + PATH))
    dates = dates_for(arrivals, 0)
    first = dates.date("v", 0.0, 2.0)[0]
    assert first is not None
    assert dates.date("v", 2.0, 2.0)[0] == first + timedelta(seconds=2)
    moved = dates.date("v", 4.0, 2.0)[0]
    assert moved is not None and moved.timestamp() == pytest.approx(T0 + 4 + 3 + PATH, abs=0.003)
    assert dates.date("v", 6.0, 2.0)[0] == moved + timedelta(seconds=2)

    arrivals = ArrivalMap()
    feed_live(arrivals, 0, 120, T0)
    arrivals.begin_piece(120 * FRAME)  # a backup GOP received 1.4 s earlier than main's timeline
    for n in range(120, 240):
        arrivals.record(n * FRAME, chunked(T0 + n / 30 - 1.4 + PATH))
    dates = dates_for(arrivals, 0)
    with caplog.at_level(logging.INFO, logger="onair.transcoder.pdt"):
        got = [dates.date("v", 2.0 * k, 2.0)[0] for k in range(4)]
    assert all(b - a == timedelta(seconds=2) for a, b in zip(got, got[1:]))  # type: ignore[operator]
    assert "never goes back" in caplog.text


def test_a_new_run_is_dated_from_its_own_first_frame_never_before_the_last_runs_end():
    arrivals = ArrivalMap()
    feed_live(arrivals, 0, 30 * 20, T0)
    start = [0]
    dates = ProgramDateTimes(arrivals, lambda: start[0])
    dates.begin_run("r1")
    last = dates.date("v", 0.0, 2.0)[0]
    dates.date("v", 2.0, 2.0)
    # A new encoder 10 s into the stream: its media time starts near zero again.
    start[0] = 10 * 90_000
    dates.begin_run("r2")
    again = dates.date("v", 0.0, 2.0)[0]
    assert last is not None and again is not None
    assert again.timestamp() == pytest.approx(T0 + 10 + PATH, abs=0.003)
    # One that replays frames the last run had shown (it ended at 12 s) is dated from that end.
    start[0] = 11 * 90_000
    dates.begin_run("r3")
    clamped = dates.date("v", 0.0, 2.0)[0]
    assert clamped is not None and clamped.timestamp() == pytest.approx(T0 + 10 + PATH + 2, abs=0.003)
    assert dates.date("v", 2.0, 2.0)[0] == clamped + timedelta(seconds=2)


def test_without_an_arrival_there_is_no_date_and_a_reason():
    dates = ProgramDateTimes(ArrivalMap(), lambda: None)
    dates.begin_run("r1")
    assert dates.date("v", 0.0, 2.0) == (None, "the relay has not told which frame the encoder started with")
    dates = dates_for(ArrivalMap(), 0)
    assert dates.date("v", 0.0, 2.0) == (None, "no frame arrival recorded yet")


def test_the_playlist_takes_the_date_it_is_given_but_never_goes_back():
    playlist = MediaPlaylist(window=5, version=7)
    t = datetime(2027, 1, 1, tzinfo=timezone.utc)
    late = t + timedelta(seconds=10)  # when the packager saw it: not what a given date is
    playlist.add("a", 2.0, "r1", "i1", late, program_date_time=t)
    playlist.add("b", 2.0, "r1", "i1", late, program_date_time=t + timedelta(seconds=2))
    playlist.add("c", 2.0, "r2", "i2", late, program_date_time=t + timedelta(seconds=3))  # overlaps b
    assert [e.program_date_time for e in playlist.entries] == [t, t + timedelta(seconds=2), t + timedelta(seconds=4)]


class FakeStdin:
    """What the relay writes to: an encoder's stdin that keeps up."""

    def __init__(self) -> None:
        self.data = bytearray()

        class Transport:
            def get_write_buffer_size(self) -> int:
                return 0

        self.transport = Transport()

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.data += data


def test_the_relay_records_arrivals_on_the_encoders_timeline_and_a_replayed_cache_keeps_its_own():
    from onair.agent.supervisor import Supervisor
    from onair.agent.transcoder.relay import Relay

    mono, wall = [100.0], [T0]
    relay = Relay(
        Supervisor(),
        main_url="rtmp://ingest/live/main",
        backup_url="rtmp://ingest/live/backup",
        clock=lambda: mono[0],
        wall_clock=lambda: wall[0],
    )
    for reader in relay.readers.values():
        reader.child.on_start(None)
    main, backup = relay.readers["main"], relay.readers["backup"]
    # The backup's keyframe (and one frame) arrive 0.5 s before anything else; it stays warm.
    backup.child.on_data(b"".join(stream(7_000_000, 2, gop=30, audio=False)))
    wall[0] += 0.5
    mono[0] += 0.5
    main.child.on_data(b"".join(stream(5_000_000, 1, audio=False)))
    relay.attach(FakeStdin())  # type: ignore[arg-type]
    assert relay.active == "main" and relay.encoder_start_dts is not None
    start = relay.encoder_start_dts
    for n in range(1, 30):  # a second of main, frame by frame in real time
        wall[0] += FRAME / 90_000
        mono[0] += FRAME / 90_000
        ts = 5_000_000 + n * FRAME
        main.child.on_data(b"".join(pes(VIDEO, ts + FRAME, ts)))
    at, _ = relay.arrivals.lookup((start + 10 * FRAME) % WRAP)
    assert at == pytest.approx(T0 + 0.5 + 10 * FRAME / 90_000)
    # The backup's next keyframe comes in after main's last frame (its timestamps in step with the
    # time it arrived, as a live source's are), then main falls silent: the backup's cached frames
    # are spliced in, dated when they arrived, not when they are forwarded, in a piece of their own.
    key_ts = 7_000_000 + round(1.6 * 90_000)
    mono[0], wall[0] = 101.6, T0 + 1.6
    backup.child.on_data(b"".join(pes(VIDEO, key_ts + FRAME, key_ts, key=True)))
    mono[0], wall[0] = 102.6, T0 + 2.6
    backup.child.on_data(b"".join(pes(VIDEO, key_ts + 2 * FRAME, key_ts + FRAME)))
    relay._decide()
    assert relay.active == "backup"
    # After main's 30 frames, and after the 0.1 s of picture between main's last frame and the
    # backup's keyframe, which the timeline keeps.
    hole = 1.6 - (0.5 + 29 * FRAME / 90_000) - FRAME / 90_000
    at, _ = relay.arrivals.lookup((start + 30 * FRAME + round(hole * 90_000)) % WRAP)
    assert at == pytest.approx(T0 + 1.6, abs=FRAME / 90_000)


def test_the_first_video_decode_time_of_an_mpegts_segment():
    data = b"".join([pat(), pmt()] + pes(0x101, 77) + pes(VIDEO, 123_456 + FRAME, 123_456, key=True))
    assert first_video_decode_time(data) == 123_456
    assert first_video_decode_time(b"".join([pat()] + pes(VIDEO, 5))) is None  # no PMT: not known


async def test_the_packager_falls_back_to_arrival_with_the_reason_logged(tmp_path, caplog):
    from onair.agent.transcoder.packager import Packager
    from onair.agent.transcoder.sinks import DirSink
    from tests.unit.test_transcoder_packager import FfmpegLike

    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(
        work, DirSink(out), kinds=("cmaf",), dash=False, window=3, dates=ProgramDateTimes(ArrivalMap(), lambda: None)
    )
    packager.begin_run("r1", ["360p"])
    ffmpeg = FfmpegLike(work, "r1")
    ffmpeg.segment()
    before = datetime.now(timezone.utc)
    with caplog.at_level(logging.WARNING, logger="onair.transcoder.packager"):
        await packager.sync()
    entry = packager.renditions[("cmaf", "360p")].playlist.entries[0]
    assert entry.program_date_time <= before
    assert "program-date-time falls back" in caplog.text and "media time could not be read" in caplog.text


def test_mpegts_segment_starts_carry_on_across_the_33_bit_wrap(tmp_path):
    from onair.agent.transcoder.packager import Packager, _Rendition
    from onair.agent.transcoder.sinks import DirSink

    packager = Packager(tmp_path / "work", DirSink(tmp_path / "out"), kinds=("ts",), dash=False)
    rendition = _Rendition("ts", "360p", MediaPlaylist(5, 6))
    folder = tmp_path / "work" / rendition.base
    folder.mkdir(parents=True)
    starts = []
    for n, dts in enumerate((WRAP - 90_000, (WRAP + 90_000) % WRAP, 3 * 90_000)):
        (folder / f"s{n}.ts").write_bytes(b"".join([pat(), pmt()] + pes(VIDEO, dts + FRAME, dts, key=True)))
        starts.append(packager._segment_start(rendition, f"s{n}.ts", None))
    assert starts[1] - starts[0] == pytest.approx(2.0) and starts[2] - starts[1] == pytest.approx(2.0)
