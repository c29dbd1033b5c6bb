"""The recorder's choice of source: sticky while it delivers, round-robin when it drops."""

import pytest

from onair.agent.recorder.sources import SOURCE_SLICE_SECONDS, SourceRotation

MAIN, BACKUP = "rtmp://show-ingest/live/stream", "rtmp://show-ingest-backup/live/stream"


def test_a_dropped_source_hands_over_round_robin_and_a_new_session_starts_from_the_first():
    sources = SourceRotation([MAIN, BACKUP])
    assert sources.current == MAIN and sources.several
    assert sources.advance() == BACKUP
    # Nothing moves it back to main but backup dropping too.
    assert sources.current == BACKUP
    assert sources.advance() == MAIN
    sources.advance()
    sources.reset()
    assert sources.current == MAIN


def test_one_source_stays_itself():
    sources = SourceRotation([MAIN])
    assert not sources.several and sources.advance() == MAIN
    with pytest.raises(ValueError):
        SourceRotation([])


def test_attempts_are_sliced_only_while_a_session_waits_with_somewhere_else_to_look():
    full = 11.0
    assert SourceRotation([MAIN, BACKUP]).attempt_timeout(full, reconnecting=True) == SOURCE_SLICE_SECONDS < full
    assert SourceRotation([MAIN, BACKUP]).attempt_timeout(full, reconnecting=False) == full
    assert SourceRotation([MAIN]).attempt_timeout(full, reconnecting=True) == full
    assert SourceRotation([MAIN, BACKUP]).attempt_timeout(2.0, reconnecting=True) == 2.0


def test_the_backup_joins_and_leaves_without_losing_the_source_in_use():
    sources = SourceRotation([MAIN])
    assert sources.use([MAIN, BACKUP]) and sources.current == MAIN and sources.several
    assert not sources.use([MAIN, BACKUP])
    assert sources.advance() == BACKUP
    assert sources.use([MAIN]) and sources.current == MAIN, "a source that is gone is not tried again"
    with pytest.raises(ValueError):
        sources.use([])
