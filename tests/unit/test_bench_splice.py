"""The pure parts of bench/g2g/splice.py."""

from __future__ import annotations

from datetime import datetime

import pytest

from bench.g2g.splice import switch_time_ms

LOG = """2026-12-07 00:40:01,100 INFO source switch: main -> backup (main frozen)
2026-12-07 00:40:02,200 INFO source switch: backup -> main (main healthy)
2026-12-07 00:40:30,300 INFO source switch: main -> backup (main frozen)
"""


def ms(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000


def test_the_switch_is_the_first_from_the_moment_the_test_caused_it():
    assert switch_time_ms(LOG, "main -> backup") == ms("2026-12-07 00:40:01,100")
    # An earlier one (a reader starved on a loaded machine) is not the one the test caused.
    assert switch_time_ms(LOG, "main -> backup", ms("2026-12-07 00:40:29,000")) == ms("2026-12-07 00:40:30,300")
    with pytest.raises(ValueError, match="no 'backup -> main' switch"):
        switch_time_ms(LOG, "backup -> main", ms("2026-12-07 00:40:29,000"))
