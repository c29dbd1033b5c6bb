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
    relay = Relay(Supervisor(), main_url="rtmp://ingest/live/main", backup_url="rtmp://ingest/live/backup",
                  on_select=selected.append, clock=clock)
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
    relay = Relay(Supervisor(), main_url="rtmp://ingest/live/main", backup_url="rtmp://ingest/live/backup?x=1",
                  read_token=lambda: token[0])
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
    relay = Relay(Supervisor(), pull_uris=["rtmp://elsewhere/app/a", "srt://elsewhere:9000"],
                  read_token=lambda: "s3cr3t")
    assert _input(relay, "pull") == "rtmp://elsewhere/app/a"
    relay.readers["pull"].child.on_exit(1)
    assert _input(relay, "pull") == "srt://elsewhere:9000"
