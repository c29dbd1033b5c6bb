from datetime import datetime, timezone
from pathlib import Path

from onair.agent.recorder.naming import (
    livestream_slug,
    next_part_number,
    parse_parts,
    part_name,
    part_pattern,
    session_prefix,
    session_started,
    sidecar_name,
    unused_prefix,
)

T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def test_names_carry_livestream_start_time_and_part_number():
    prefix = session_prefix("prod/launch-event", T0)
    assert prefix == "prod_launch-event_20250304T050607Z"
    assert part_name(prefix, 3) == "prod_launch-event_20250304T050607Z_part0003.mp4"
    assert sidecar_name(prefix) == "prod_launch-event_20250304T050607Z.json"
    assert session_started(prefix) == T0


def test_start_time_is_written_in_utc_whatever_the_zone():
    from datetime import timedelta

    local = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert session_prefix("ns/a", local) == session_prefix("ns/a", T0)


def test_ffmpeg_pattern_expands_to_the_part_names():
    prefix = session_prefix("ns/show", T0)
    assert part_pattern(prefix) % 12 == part_name(prefix, 12)


def test_a_percent_sign_cannot_reach_ffmpegs_pattern_unescaped():
    assert "%" not in livestream_slug("ns/100%live")
    prefix = "odd%prefix"
    assert part_pattern(prefix) % 1 == "odd%prefix_part0001.mp4"


def test_names_sort_by_session_then_part():
    early, late = session_prefix("ns/show", T0), session_prefix("ns/show", T0.replace(hour=23))
    names = [part_name(late, 1), part_name(early, 10), part_name(early, 2), part_name(early, 1)]
    assert sorted(names) == [part_name(early, 1), part_name(early, 2), part_name(early, 10), part_name(late, 1)]
    assert [p.name for p in parse_parts("ns/show", names)] == sorted(names)


def test_parse_parts_ignores_other_livestreams_and_foreign_files():
    prefix = session_prefix("ns/show", T0)
    names = [
        part_name(prefix, 1),
        part_name(session_prefix("ns/show-2", T0), 1),
        part_name(session_prefix("other/show", T0), 1),
        sidecar_name(prefix),
        "notes.txt",
        f".{sidecar_name(prefix)}.tmp",
    ]
    parts = parse_parts("ns/show", names)
    assert [(p.prefix, p.number) for p in parts] == [(prefix, 1)]


def test_next_part_continues_after_the_highest_on_disk():
    prefix = session_prefix("ns/show", T0)
    other = session_prefix("ns/show", T0.replace(minute=59))
    parts = parse_parts("ns/show", [part_name(prefix, 1), part_name(prefix, 4), part_name(other, 9)])
    assert next_part_number(parts, prefix) == 5
    assert next_part_number(parts, session_prefix("ns/show", T0.replace(second=0))) == 1


def test_unused_prefix_moves_past_an_existing_session(tmp_path: Path):
    taken = session_prefix("ns/show", T0)
    (tmp_path / part_name(taken, 1)).write_bytes(b"x")
    assert unused_prefix(tmp_path, "ns/show", T0) == session_prefix("ns/show", T0.replace(second=8))
    (tmp_path / sidecar_name(session_prefix("ns/show", T0.replace(second=8)))).write_text("{}")
    assert unused_prefix(tmp_path, "ns/show", T0) == session_prefix("ns/show", T0.replace(second=9))
    assert unused_prefix(tmp_path, "ns/other", T0) == session_prefix("ns/other", T0)
