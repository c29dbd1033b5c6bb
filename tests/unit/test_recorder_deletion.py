"""Deleting one finished session's files (onair.agent.recorder.deletion): its parts, then its
sidecar; nothing of another session or livestream; harmless when repeated."""

from __future__ import annotations

import pytest

from onair.agent.recorder.deletion import NotASessionOf, delete_session

SESSION = "events_show_20260714T090005Z"


def test_parts_then_sidecar_and_nothing_else(tmp_path):
    names = [
        f"{SESSION}_part0001.mp4",
        f"{SESSION}_part0002.mp4",
        f"{SESSION}.json",
        "events_show_20260714T100000Z_part0001.mp4",
        "events_show_20260714T100000Z.json",
        "events_other_20260714T090005Z_part0001.mp4",
        "events_show-b_20260714T090005Z_part0001.mp4",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    deleted = delete_session(tmp_path, "events/show", SESSION)
    assert deleted == [f"{SESSION}_part0001.mp4", f"{SESSION}_part0002.mp4", f"{SESSION}.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])
    assert delete_session(tmp_path, "events/show", SESSION) == []


@pytest.mark.parametrize(
    "bad",
    [
        "events_other_20260714T090005Z",
        "events_show",
        "../events_show_20260714T090005Z",
        "events_show_20260714T090005Z_part0001",
    ],
)
def test_only_a_session_of_this_livestream(tmp_path, bad):
    with pytest.raises(NotASessionOf):
        delete_session(tmp_path, "events/show", bad)


def test_a_part_that_cannot_go_keeps_the_sidecar(tmp_path):
    (tmp_path / f"{SESSION}_part0001.mp4").write_bytes(b"x")
    # Something in the way that unlink cannot remove, whoever runs the test (root included).
    (tmp_path / f"{SESSION}_part0002.mp4").mkdir()
    (tmp_path / f"{SESSION}.json").write_text("{}")
    with pytest.raises(OSError, match=f"cannot delete {SESSION}_part0002.mp4"):
        delete_session(tmp_path, "events/show", SESSION)
    assert not (tmp_path / f"{SESSION}_part0001.mp4").exists()
    assert (tmp_path / f"{SESSION}.json").exists(), "the session stays listed, so the deletion is retried"
