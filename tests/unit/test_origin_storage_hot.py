"""The origin's in-memory copy of the files written last: what it keeps, drops and answers."""

from __future__ import annotations

import os

from onair.agent.origin.storage import HOT_FILE_MAX_BYTES, Storage


def test_written_files_are_answered_from_memory_with_the_stored_files_etag(tmp_path):
    storage = Storage(str(tmp_path), hot_bytes=1000)
    storage.prepare()
    storage.write("hls/a/1.m4s", b"x" * 100)
    hot = storage.hot("hls/a/1.m4s")
    st = os.stat(tmp_path / "hls/a/1.m4s")
    assert hot is not None and hot.data == b"x" * 100
    assert hot.etag == f"{st.st_mtime_ns:x}-{st.st_size:x}" and hot.mtime == st.st_mtime
    storage.write("hls/a/1.m4s", b"y" * 10)  # overwritten: the new bytes, counted once
    assert storage.hot("hls/a/1.m4s").data == b"y" * 10 and storage.read("hls/a/1.m4s") == b"y" * 10


def test_the_oldest_go_first_beyond_the_budget_and_deleted_files_at_once(tmp_path):
    storage = Storage(str(tmp_path), hot_bytes=250)
    storage.prepare()
    for n in range(3):
        storage.write(f"hls/a/{n}.m4s", bytes([n]) * 100)
    assert storage.hot("hls/a/0.m4s") is None  # 300 bytes > 250: the oldest left memory...
    assert storage.read("hls/a/0.m4s") == bytes([0]) * 100  # ...not the volume
    assert storage.hot("hls/a/1.m4s") is not None
    storage.write("hls/a/3.m4s", b"3" * 100)  # 1 was asked for since: 2 is now the least recent
    assert storage.hot("hls/a/2.m4s") is None and storage.hot("hls/a/1.m4s") is not None
    assert storage.delete(["hls/a/1.m4s"]) == 1
    assert storage.hot("hls/a/1.m4s") is None and storage.read("hls/a/1.m4s") is None


def test_files_too_large_for_memory_are_read_from_the_volume(tmp_path):
    storage = Storage(str(tmp_path))
    storage.prepare()
    storage.write("dash/big.m4s", b"z" * (HOT_FILE_MAX_BYTES + 1))
    assert storage.hot("dash/big.m4s") is None
    assert len(storage.read("dash/big.m4s") or b"") == HOT_FILE_MAX_BYTES + 1
