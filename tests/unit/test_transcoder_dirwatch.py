"""The packager's inotify watch on real directories: finished files wake it, nothing else does."""

from __future__ import annotations

import asyncio
import os

import pytest

from onair.agent.transcoder.dirwatch import DirWatch


async def test_a_file_renamed_into_place_wakes_the_watch(tmp_path):
    watch = DirWatch()
    watch.add([tmp_path / "hls/cmaf/360p"])
    assert (tmp_path / "hls/cmaf/360p").is_dir()  # made if missing
    try:
        assert await watch.wait(0.05) is False  # nothing happened
        tmp = tmp_path / "hls/cmaf/360p/seg.m4s.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT)  # begun, not finished: no wake-up
        os.write(fd, b"x")
        assert await watch.wait(0.05) is False
        os.close(fd)  # closed after writing: finished
        assert await watch.wait(1.0) is True
        os.rename(tmp, tmp_path / "hls/cmaf/360p/seg.m4s")
        assert await watch.wait(1.0) is True
        assert watch.drain() is False  # every event was consumed
    finally:
        watch.close()


async def test_stop_ends_the_wait_at_once(tmp_path):
    watch = DirWatch()
    watch.add([tmp_path])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, stop.set)
    started = loop.time()
    try:
        assert await watch.wait(30, stop) is False
        assert loop.time() - started < 10  # well before the timeout
    finally:
        watch.close()


def test_an_unwatchable_directory_is_an_os_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    watch = DirWatch()
    try:
        with pytest.raises(OSError):
            watch.add([blocker / "sub"])
    finally:
        watch.close()


async def test_a_packager_that_cannot_watch_polls(tmp_path):
    from onair.agent.transcoder.packager import Packager
    from onair.agent.transcoder.sinks import DirSink

    work = tmp_path / "work"
    work.mkdir()
    (work / "hls").write_text("a file where ffmpeg's directories should go")
    packager = Packager(work, DirSink(tmp_path / "out"), kinds=("cmaf",), dash=False)
    packager.begin_run("r1", ["360p"])
    assert packager._watch is None and packager.poll_seconds(0.0) > 0
