"""The origin's data_dir: the only place it writes, and only through here.

Writes are atomic (temporary file in ``.tmp`` then rename) so a player never reads half a
segment, and every path is checked to resolve inside data_dir, symlinks included.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Iterable, Optional

from .paths import BadPath, safe_relpath

log = logging.getLogger("onair.agent.origin")


class Storage:
    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()
        self.tmp = self.root / ".tmp"

    def prepare(self) -> None:
        """Create the tree, or exit with a message an operator can act on."""
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            probe = self.tmp / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SystemExit(f"onair agent origin: data_dir {self.root} is not writable: {exc.strerror or exc}. "
                             "Mount a writable volume there or set dataDir in the config.") from None
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)

    def path(self, rel: str) -> Path:
        """Absolute path of a data_dir-relative path; ``BadPath`` if it would leave data_dir."""
        rel = safe_relpath(rel)
        full = self.root / rel
        real = Path(os.path.realpath(full))
        if real != self.root and self.root not in real.parents:
            raise BadPath("path resolves outside data_dir")
        return full

    def existing(self, rel: str) -> Optional[Path]:
        try:
            full = self.path(rel)
        except BadPath:
            return None
        return full if full.is_file() else None

    def read(self, rel: str) -> Optional[bytes]:
        full = self.existing(rel)
        if full is None:
            return None
        try:
            return full.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None  # gone since (a window slide): other errors are not a "not found"

    def write(self, rel: str, data: bytes) -> None:
        full = self.path(rel)
        full.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{uuid.uuid4().hex}{full.suffix}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, full)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def same_bytes(self, rel: str, data: bytes) -> bool:
        full = self.existing(rel)
        try:
            return full is not None and full.stat().st_size == len(data) and full.read_bytes() == data
        except OSError:
            return False

    def delete(self, rels: Iterable[str]) -> int:
        deleted = 0
        for rel in rels:
            try:
                self.path(rel).unlink()
                deleted += 1
            except FileNotFoundError:
                pass
            except (OSError, BadPath) as exc:
                log.warning("cannot delete %s: %s", rel, exc)
        return deleted

    def walk(self, top: str, suffixes: tuple[str, ...]) -> list[tuple[str, float]]:
        """(relative path, mtime) of the files under ``top`` with one of ``suffixes``."""
        found: list[tuple[str, float]] = []
        base = self.root / top
        if not base.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.endswith(suffixes):
                    full = Path(dirpath) / name
                    try:
                        found.append((full.relative_to(self.root).as_posix(), full.stat().st_mtime))
                    except OSError:
                        continue
        return found
