"""The DVR index on disk, so a restarted origin (new pod, crash, upgrade) keeps its rewind window.

An append-only JSON-lines journal of the index's changes (``Dvr.journal``), flushed every
second and compacted into a snapshot when it grows well past the index it describes. Losing
the last second of it costs at most a segment or two of rewind, never correctness: files the
replayed index does not reference are deleted at startup.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Iterable, Optional

log = logging.getLogger("onair.agent.origin")
COMPACT_SLACK_LINES = 1000


class Journal:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "journal.jsonl"
        self._file: Optional[IO[str]] = None
        self.lines = 0
        self.failed = False

    def load(self) -> list[dict]:
        records: list[dict] = []
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line cut short by a crash
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot read the DVR journal %s: %s; starting with an empty DVR", self.path, exc)
        return records

    def rewrite(self, records: Iterable[dict]) -> None:
        """Replace the journal with ``records`` (a snapshot) atomically, then keep appending."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        count = 0
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        self.lines = count

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
            self._file.flush()
            self.lines += len(records)
            self.failed = False
        except OSError as exc:
            if not self.failed:  # once per failure streak: a full disk would say it every second
                log.error("cannot write the DVR journal %s: %s; the DVR would not survive a restart", self.path, exc)
            self.failed = True

    def needs_compaction(self, live_records: int) -> bool:
        return self.lines > 2 * live_records + COMPACT_SLACK_LINES

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
