"""Relay source selection fed with hand-built TS, without reader processes (nothing is started)."""

from __future__ import annotations

from onair.agent.supervisor import Supervisor
from onair.agent.transcoder.relay import Relay
from tests.unit.test_transcoder_mpegts import stream


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _relay(clock: Clock, selected: list[str]) -> Relay:
    relay = Relay(
        Supervisor(),
        main_url="rtmp://ingest/live/main",
        backup_url="rtmp://ingest/live/backup",
        on_select=selected.append,
        clock=clock,
    )
    for reader in relay.readers.values():
        reader.child.on_start(None)  # what the supervisor calls when a reader process starts
    return relay


def test_the_first_healthy_source_is_selected_on_its_keyframe_not_at_the_next_tick():
    clock, selected = Clock(), []
    relay = _relay(clock, selected)
    relay.readers["backup"].child.on_data(b"".join(stream(0, 3)))
    assert relay.selected() == "backup" and selected == ["backup"]
    clock.now += 0.05
    relay.readers["main"].child.on_data(b"".join(stream(0, 3)))
    # Nobody watches yet (no encoder): the preferred source wins at once, and says so.
    assert relay.selected() == "main" and selected == ["backup", "main"]


def test_a_source_without_a_keyframe_is_not_selected():
    clock, selected = Clock(), []
    relay = _relay(clock, selected)
    relay.readers["main"].child.on_data(b"".join(stream(0, 3)[:2]))  # PAT and PMT only
    assert relay.selected() is None and selected == []


def _input(relay: Relay, name: str) -> str:
    argv = relay.readers[name].child.argv
    return argv[argv.index("-i") + 1]


def test_ingest_readers_carry_the_read_token_read_at_every_start_and_never_shown():
    from onair.agent.supervisor import shown_argv

    token = ["s3cr3t-one"]
    relay = Relay(
        Supervisor(),
        main_url="rtmp://ingest/live/main",
        backup_url="rtmp://ingest/live/backup?x=1",
        read_token=lambda: token[0],
    )
    assert _input(relay, "main") == "rtmp://ingest/live/main?token=s3cr3t-one"
    assert _input(relay, "backup") == "rtmp://ingest/live/backup?x=1&token=s3cr3t-one"
    child = relay.readers["main"].child
    assert "s3cr3t-one" not in shown_argv(child.argv, child.secrets)
    token[0] = "s3cr3t-two"  # the Secret was rotated: the next process uses the new one
    child.on_exit(1)
    assert _input(relay, "main") == "rtmp://ingest/live/main?token=s3cr3t-two"
    assert "s3cr3t-two" not in shown_argv(child.argv, child.secrets)


def test_no_token_file_no_token_and_pull_sources_never_get_the_ingest_token():
    assert _input(Relay(Supervisor(), main_url="rtmp://ingest/live/main"), "main") == "rtmp://ingest/live/main"
    relay = Relay(
        Supervisor(), pull_uris=["rtmp://elsewhere/app/a", "srt://elsewhere:9000"], read_token=lambda: "s3cr3t"
    )
    assert _input(relay, "pull") == "rtmp://elsewhere/app/a"
    relay.readers["pull"].child.on_exit(1)
    assert _input(relay, "pull") == "srt://elsewhere:9000"


# ----------------------------------------------------------------------------- failover timing
def _live(
    relay: Relay,
    clock: Clock,
    wall: list[float],
    name: str,
    first_ts: int,
    n: int,
    *,
    at: float,
    gop: int = 60,
    key_at: int = 0,
) -> None:
    """``n`` frames of source ``name`` in real time from wall time ``at`` (their timestamps in step
    with it, as a live source's are), a keyframe at frame ``key_at`` and every ``gop`` after."""
    from tests.unit.test_transcoder_mpegts import FRAME, VIDEO, pat, pes, pmt

    reader = relay.readers[name]
    for i in range(n):
        t = at + i * FRAME / 90_000
        clock.now, wall[0] = 100.0 + t, 1_800_000_000.0 + t
        ts = first_ts + i * FRAME
        head = [pat(), pmt(audio=False)] if reader.feed.pat is None else []
        reader.child.on_data(b"".join(head + pes(VIDEO, ts + FRAME, ts, key=(i - key_at) % gop == 0)))


def _failover_relay() -> tuple[Relay, Clock, list[float], list[bytes]]:
    from tests.unit.test_transcoder_pdt import FakeStdin

    clock, wall = Clock(), [0.0]
    relay = Relay(
        Supervisor(),
        main_url="rtmp://ingest/live/main",
        backup_url="rtmp://ingest/live/backup",
        clock=clock,
        wall_clock=lambda: wall[0],
    )
    for reader in relay.readers.values():
        reader.child.on_start(None)
    sink = FakeStdin()
    return relay, clock, wall, sink  # type: ignore[return-value]


def _video_dts(data: bytes) -> list[int]:
    from tests.unit.test_transcoder_mpegts import frames

    return [dts for dts, _ in frames(data)]


def test_a_cached_keyframe_older_than_what_viewers_saw_is_not_replayed_and_the_gap_stays_time():
    from tests.unit.test_transcoder_mpegts import FRAME

    relay, clock, wall, sink = _failover_relay()
    # Both sources carry the same camera: main from 0 s, the backup from 0 s too (its own timestamps),
    # the backup's keyframes at 0 s and 2 s. Main is on air until 1.5 s, then its reader ends.
    _live(relay, clock, wall, "backup", 9_000_000, 1, at=0.0)
    _live(relay, clock, wall, "main", 1_000_000, 1, at=0.0)
    relay.attach(sink)  # type: ignore[arg-type]
    assert relay.active == "main"
    for i in range(1, 45):
        _live(relay, clock, wall, "backup", 9_000_000 + i * FRAME, 1, at=i * FRAME / 90_000, key_at=i)
        _live(relay, clock, wall, "main", 1_000_000 + i * FRAME, 1, at=i * FRAME / 90_000, key_at=-1)
    sent_main = _video_dts(sink.data)
    relay.readers["main"].child.on_exit(0)
    # The backup's cached keyframe (0 s) holds 1.5 s that viewers already saw: not replayed.
    assert relay.pending == "backup" and _video_dts(sink.data) == sent_main
    for i in range(45, 62):
        _live(relay, clock, wall, "backup", 9_000_000 + i * FRAME, 1, at=i * FRAME / 90_000, key_at=i)
    assert relay.active == "backup"
    spliced = _video_dts(sink.data)[len(sent_main) :]
    # Its next keyframe (2.0 s) goes on where main's picture ended (1.5 s, its last frame sent
    # being held back until complete): the half second nobody delivered stays on the timeline.
    assert spliced[0] - sent_main[-1] == (60 - (len(sent_main) - 1)) * FRAME


def test_a_cached_keyframe_newer_than_what_viewers_saw_is_replayed_at_its_place_on_the_timeline():
    from tests.unit.test_transcoder_mpegts import FRAME

    relay, clock, wall, sink = _failover_relay()
    _live(relay, clock, wall, "main", 1_000_000, 1, at=0.0)
    relay.attach(sink)  # type: ignore[arg-type]
    _live(relay, clock, wall, "main", 1_000_000 + FRAME, 29, at=FRAME / 90_000, key_at=-1)
    sent_main = _video_dts(sink.data)
    # Main froze after 1 s (its last frame at 29 frames); the backup's keyframe comes at 1.5 s.
    _live(relay, clock, wall, "backup", 9_000_000 + 45 * FRAME, 40, at=45 * FRAME / 90_000)
    relay._decide()
    assert relay.active == "backup"
    spliced = _video_dts(sink.data)[len(sent_main) :]
    assert spliced[0] - sent_main[-1] == 45 * FRAME - (len(sent_main) - 1) * FRAME


def test_received_is_the_lower_envelope_of_late_chunked_reads():
    from onair.agent.transcoder.mpegts import Feed
    from tests.unit.test_transcoder_mpegts import FRAME, VIDEO, pat, pes, pmt

    feed = Feed("main")
    feed.push(pat() + pmt(audio=False), 0.0)
    for i in range(90):
        true = i * FRAME / 90_000
        late = (0.1 - true % 0.1) % 0.1  # read in chunks every 100 ms: up to a chunk late
        feed.push(b"".join(pes(VIDEO, 5000 + i * FRAME + FRAME, 5000 + i * FRAME, key=i % 30 == 0)), 50.0 + true + late)
    assert abs(feed.received(5000 + 40 * FRAME) - (50.0 + 40 * FRAME / 90_000)) < 0.002
    assert feed.received(5000 + 40 * FRAME + 20 * 90_000) is None  # nothing seen near it
