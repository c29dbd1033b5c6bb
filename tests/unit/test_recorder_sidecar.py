import json
from datetime import datetime, timedelta, timezone

import pytest

from onair.agent.recorder.naming import parse_parts, part_name, session_prefix, sidecar_name
from onair.agent.recorder.duration import parse_duration
from onair.agent.recorder.session import Backoff, Session
from onair.agent.recorder import sidecar as sidecar_mod
from onair.agent.recorder.sidecar import (
    FinishedSessions,
    PartInfo,
    sessions_without_sidecar,
    sidecar_document,
    write_sidecar,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


def doc(parts, recorded=99.0):
    return sidecar_document(
        livestream="ns/show",
        record_type="origin",
        started_at=T0,
        ended_at=T0 + timedelta(seconds=20),
        parts=parts,
        end_reason="recording stopped",
        recorded_seconds=recorded,
    )


def test_sidecar_sums_probed_parts():
    d = doc([PartInfo("a_part0001.mp4", 100, 14.0004), PartInfo("a_part0002.mp4", 50, 5.5)])
    assert d["durationSeconds"] == 19.5
    assert (d["startedAt"], d["endedAt"]) == ("2025-01-02T03:04:05.678Z", "2025-01-02T03:04:25.678Z")
    assert d["parts"][0] == {"file": "a_part0001.mp4", "bytes": 100, "durationSeconds": 14.0}
    assert d["livestream"] == "ns/show" and d["recordType"] == "origin" and "recovered" not in d


def test_an_unprobeable_part_falls_back_to_the_counted_duration():
    d = doc([PartInfo("a_part0001.mp4", 100, 14.0), PartInfo("a_part0002.mp4", 28, None)], recorded=14.2)
    assert d["durationSeconds"] == 14.2
    assert d["parts"][1]["durationSeconds"] is None


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    prefix = session_prefix("ns/show", T0)
    path = write_sidecar(tmp_path, prefix, doc([]))
    assert path.name == sidecar_name(prefix)
    assert json.loads(path.read_text())["endReason"] == "recording stopped"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_failure_raises_and_cleans_up(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(OSError):
        write_sidecar(missing, "p", doc([]))


def test_sessions_without_sidecar(tmp_path):
    done, open_ = session_prefix("ns/show", T0), session_prefix("ns/show", T0 + timedelta(hours=1))
    names = [part_name(done, 1), part_name(open_, 1), part_name(open_, 2)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / sidecar_name(done)).write_text("{}")
    orphans = sessions_without_sidecar(tmp_path, parse_parts("ns/show", names))
    assert list(orphans) == [open_]
    assert [p.number for p in orphans[open_]] == [1, 2]


def test_parse_duration_takes_the_number_and_refuses_na():
    assert parse_duration(["5.056000"]) == 5.056
    assert parse_duration(["[mov] partial file", "3.0"]) == 3.0
    assert parse_duration(["N/A"]) is None
    assert parse_duration([]) is None


def test_finalize_window_runs_from_the_last_media():
    session = Session(prefix="p", started_at=T0, last_media_at=100.0)
    assert not session.finalize_due(109.9, 10)
    assert session.finalize_due(110.0, 10)
    assert session.seconds_until_due(104.0, 10) == 6.0
    assert session.seconds_until_due(200.0, 10) == 0.0


def test_backoff_doubles_to_its_ceiling_and_resets():
    backoff = Backoff(1, 5)
    assert [backoff.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next() == 1
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_finished_sessions_are_read_from_the_sidecars_of_this_livestream_only(tmp_path, monkeypatch):
    first, second = session_prefix("ns/show", T0), session_prefix("ns/show", T0 + timedelta(hours=1))
    write_sidecar(tmp_path, second, doc([PartInfo(part_name(second, 1), 10, 2.0)]))
    write_sidecar(
        tmp_path,
        first,
        dict(doc([PartInfo(part_name(first, 1), 100, 14.0), PartInfo(part_name(first, 2), 50, None)]), recovered=True),
    )
    write_sidecar(tmp_path, session_prefix("ns/other", T0), doc([]))  # another livestream on a shared volume
    (tmp_path / f"{session_prefix('ns/show', T0 + timedelta(hours=2))}.json").write_text("{ cut short")
    finished = FinishedSessions(tmp_path, "ns/show")
    got = finished.list()
    assert [r.session for r in got] == [first, second]
    assert got[0].recovered and got[0].end_reason == "recording stopped" and got[0].started_at == T0
    assert [(p.file, p.bytes, p.duration_seconds) for p in got[0].parts] == [
        (part_name(first, 1), 100, 14.0),
        (part_name(first, 2), 50, None),
    ]
    assert got[1].duration_seconds == 2.0
    assert finished.list() == got  # parsed once, same answer

    monkeypatch.setattr(sidecar_mod, "LISTED_SESSIONS", 1)
    assert [r.session for r in finished.list()] == []  # the newest is unreadable: nothing older is invented
    (tmp_path / f"{session_prefix('ns/show', T0 + timedelta(hours=2))}.json").unlink()
    assert [r.session for r in finished.list()] == [second]


def test_finished_sessions_of_a_missing_volume_are_none(tmp_path):
    assert FinishedSessions(tmp_path / "not-mounted", "ns/show").list() == []
