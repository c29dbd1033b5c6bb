"""The origin's data_dir: the only place it writes, and only through here.

Writes are atomic (temporary file in ``.tmp`` then rename) so a player never reads half a
segment, and every path is checked to resolve inside data_dir, symlinks included.

The files written last stay in memory too (``hot``), up to ``HOT_BYTES``: every viewer asks for
the same few segments and parts at the live edge, and answering them from memory costs no thread
hop, no open, stat or realpath per request. Older files (DVR rewinds) are read from the volume.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from .paths import BadPath, safe_relpath

log = logging.getLogger("onair.agent.origin")

# The live edge of a few renditions (segments and parts of the last seconds) fits many times over;
# the pod's memory limit (512Mi by default) keeps room for the rest.
HOT_BYTES = 64 * 1024 * 1024
# Larger files are never kept in memory (one would push out the whole live edge).
HOT_FILE_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class HotFile:
    data: bytes
    etag: str  # as aiohttp's FileResponse makes it from the stored file, so both answer alike
    mtime: float


class Storage:
    def __init__(self, root: str, hot_bytes: int = HOT_BYTES) -> None:
        self.root = Path(root).resolve()
        self.tmp = self.root / ".tmp"
        self.hot_bytes = hot_bytes
        self._hot: OrderedDict[str, HotFile] = OrderedDict()
        self._hot_size = 0
        # write() and delete() run in executor threads, hot() on the event loop.
        self._hot_lock = threading.Lock()

    def prepare(self) -> None:
        """Create the tree, or exit with a message an operator can act on."""
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            probe = self.tmp / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SystemExit(
                f"onair agent origin: data_dir {self.root} is not writable: {exc.strerror or exc}. "
                "Mount a writable volume there or set dataDir in the config."
            ) from None
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

    def hot(self, rel: str) -> Optional[HotFile]:
        """``rel``'s bytes when it is among the files written last (``rel`` as written: normalized)."""
        with self._hot_lock:
            entry = self._hot.get(rel)
            if entry is not None:
                self._hot.move_to_end(rel)
            return entry

    def _keep_hot(self, rel: str, data: bytes, st: os.stat_result) -> None:
        entry = HotFile(data, f"{st.st_mtime_ns:x}-{st.st_size:x}", st.st_mtime)
        with self._hot_lock:
            self._forget_hot(rel)
            if len(data) > HOT_FILE_MAX_BYTES or len(data) > self.hot_bytes:
                return
            self._hot[rel] = entry
            self._hot_size += len(data)
            while self._hot_size > self.hot_bytes:
                _, oldest = self._hot.popitem(last=False)
                self._hot_size -= len(oldest.data)

    def _forget_hot(self, rel: str) -> None:
        old = self._hot.pop(rel, None)
        if old is not None:
            self._hot_size -= len(old.data)

    def read(self, rel: str) -> Optional[bytes]:
        entry = self.hot(rel)
        if entry is not None:
            return entry.data
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
            st = os.stat(tmp)  # closed: size and mtime as the file keeps them
            os.replace(tmp, full)
        except BaseException:
            tmp.unlink(missing_ok=True)
            with self._hot_lock:
                self._forget_hot(rel)
            raise
        self._keep_hot(rel, data, st)

    def same_bytes(self, rel: str, data: bytes) -> bool:
        full = self.existing(rel)
        try:
            return full is not None and full.stat().st_size == len(data) and full.read_bytes() == data
        except OSError:
            return False

    def delete(self, rels: Iterable[str]) -> int:
        deleted = 0
        for rel in rels:
            with self._hot_lock:
                self._forget_hot(rel)
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
