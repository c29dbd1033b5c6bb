"""Wake the packager when ffmpeg finishes a file, instead of looking every few hundred ms.

Linux inotify through libc (no dependency): a file renamed into place (``temp_file`` segments
and playlists, DASH segments, the screenshot) or closed after writing in a watched
directory makes ``wait`` return. Which file does not matter: the packager scans what it knows
anyway; the point is to scan right after ffmpeg acted and not in between (every scan and every
wake-up costs CPU that bench/transcoder_cpu.py counts against the 3 % budget).

Where inotify is missing or out of watches (OSError, or AttributeError from a libc without it),
the packager polls instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import Optional


IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
# Files finished, not files begun (IN_CREATE would wake us for every .tmp ffmpeg opens) nor
# deleted (our own unlinks after uploading would wake us again; ffmpeg deletes old DASH
# segments in the same burst that brings a new one).
MASK = IN_CLOSE_WRITE | IN_MOVED_TO
READ_SIZE = 64 * 1024

_libc: Optional[ctypes.CDLL] = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


class DirWatch:
    """One inotify instance over a set of directories; any event in any of them counts."""

    def __init__(self) -> None:
        fd = _lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd
        self.watched: set[Path] = set()

    def add(self, directories: list[Path]) -> None:
        """Watch these directories too (made if missing); OSError when one cannot be."""
        for directory in directories:
            if directory in self.watched:
                continue
            directory.mkdir(parents=True, exist_ok=True)
            wd = _lib().inotify_add_watch(self.fd, os.fsencode(str(directory)), MASK)
            if wd < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
            self.watched.add(directory)

    def drain(self) -> bool:
        """Consume every pending event; True if there was any."""
        seen = False
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return seen
            if not data:
                return seen
            seen = True

    async def wait(self, timeout: float, stop: Optional[asyncio.Event] = None) -> bool:
        """Until something happens in a watched directory (True), ``timeout`` passes or ``stop``
        is set (False unless events came meanwhile)."""
        if self.drain():
            return True
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self.fd, wake)
        waiting: set[asyncio.Future] = {ready}
        stopped = None
        if stop is not None:
            stopped = loop.create_task(stop.wait())
            waiting.add(stopped)
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(self.fd)
            if stopped is not None:
                stopped.cancel()
        return self.drain()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
