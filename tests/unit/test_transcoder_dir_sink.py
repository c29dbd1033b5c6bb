"""DirSink.put_file: segments are moved (or, kept, hard-linked) into place on the same
filesystem, copied across filesystems; either way readers only ever see whole files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onair.agent.transcoder.sinks import DirSink

SHM = Path("/dev/shm")


async def test_a_segment_is_moved_into_place(tmp_path):
    local = tmp_path / "work" / "seg_000001.m4s"
    local.parent.mkdir()
    local.write_bytes(b"segment")
    inode = local.stat().st_ino
    sink = DirSink(tmp_path / "out")
    await sink.put_file("hls/cmaf/360p/seg_000001.m4s", local, keep=False)
    published = tmp_path / "out/hls/cmaf/360p/seg_000001.m4s"
    assert published.read_bytes() == b"segment" and published.stat().st_ino == inode  # no copy
    assert not local.exists()


async def test_a_kept_file_is_linked_and_stays_local(tmp_path):
    local = tmp_path / "init.mp4"
    local.write_bytes(b"init")
    sink = DirSink(tmp_path / "out")
    await sink.put_file("hls/cmaf/360p/init.mp4", local, keep=True)
    await sink.put_file("hls/cmaf/360p/init.mp4", local, keep=True)  # again: replaces, no error
    published = tmp_path / "out/hls/cmaf/360p/init.mp4"
    assert published.read_bytes() == b"init" and local.read_bytes() == b"init"
    assert not list(published.parent.glob(".*.tmp"))


async def test_a_missing_file_raises_file_not_found(tmp_path):
    sink = DirSink(tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        await sink.put_file("a.m4s", tmp_path / "gone.m4s", keep=False)
    with pytest.raises(FileNotFoundError):
        await sink.put_file("a.m4s", tmp_path / "gone.m4s", keep=True)


@pytest.mark.skipif(not SHM.is_dir() or not os.access(SHM, os.W_OK), reason="no writable /dev/shm")
async def test_across_filesystems_the_file_is_copied(tmp_path):
    shm = SHM / f"onair-sink-{os.getpid()}"
    shm.mkdir()
    try:
        if shm.stat().st_dev == tmp_path.stat().st_dev:
            pytest.skip("/dev/shm is on the same filesystem here")
        sink = DirSink(tmp_path / "out")
        for i, keep in enumerate((False, True, False)):
            local = shm / f"seg{i}.m4s"
            local.write_bytes(b"x" * 1000 + bytes([i]))
            await sink.put_file(f"hls/seg{i}.m4s", local, keep=keep)
            assert (tmp_path / f"out/hls/seg{i}.m4s").read_bytes() == b"x" * 1000 + bytes([i])
            assert local.exists() == keep
    finally:
        for f in shm.iterdir():
            f.unlink()
        shm.rmdir()


async def test_paths_outside_the_root_are_refused(tmp_path):
    from onair.agent.transcoder.sinks import SinkError

    sink = DirSink(tmp_path / "out")
    for bad in ("../escape.m3u8", "/etc/passwd", "hls//x.m4s", "hls/./x.m4s", "hls/../../x"):
        with pytest.raises(SinkError):
            await sink.put(bad, b"x")
    assert not (tmp_path / "escape.m3u8").exists()


async def test_a_directory_removed_behind_the_sink_is_made_again(tmp_path):
    import shutil

    sink = DirSink(tmp_path / "out")
    await sink.put("hls/cmaf/360p/index.m3u8", b"1")
    shutil.rmtree(tmp_path / "out/hls")
    await sink.put("hls/cmaf/360p/index.m3u8", b"2")
    local = tmp_path / "seg.m4s"
    local.write_bytes(b"s")
    shutil.rmtree(tmp_path / "out/hls")
    await sink.put_file("hls/cmaf/360p/seg.m4s", local, keep=False)
    assert (tmp_path / "out/hls/cmaf/360p/index.m3u8").exists() is False
    assert (tmp_path / "out/hls/cmaf/360p/seg.m4s").read_bytes() == b"s"
