"""The packager against a directory laid out the way ffmpeg writes it (no ffmpeg needed)."""

from __future__ import annotations

from pathlib import Path

import m3u8

from onair.agent.transcoder import packager as packager_module
from onair.agent.transcoder.packager import Packager
from onair.agent.transcoder.sinks import DirSink, SinkError

MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-STREAM-INF:BANDWIDTH=985600,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2"
360p/{run}.m3u8
"""


class FfmpegLike:
    """Writes what ffmpeg's hls and dash muxers would, one segment at a time."""

    def __init__(self, work: Path, run: str, rung: str = "360p") -> None:
        self.work, self.run, self.rung = work, run, rung
        self.dir = work / "hls/cmaf" / rung
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0
        (self.dir / f"{run}_init_{rung}.mp4").write_bytes(b"init-" + run.encode())
        (work / "hls/cmaf" / f"{run}_master.m3u8").write_text(MASTER.format(run=run))

    def segment(self, duration: float = 2.0) -> str:
        name = f"{self.run}_{self.n:06d}.m4s"
        (self.dir / name).write_bytes(f"{self.run}-{self.n}".encode())
        self.n += 1
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            "#EXT-X-TARGETDURATION:2",
            "#EXT-X-MEDIA-SEQUENCE:0",
            f'#EXT-X-MAP:URI="{self.run}_init_{self.rung}.mp4"',
        ]
        for i in range(self.n):
            lines += [f"#EXTINF:{duration:.6f},", f"{self.run}_{i:06d}.m4s"]
        (self.dir / f"{self.run}.m3u8").write_text("\n".join(lines) + "\n")
        return name


def _playlist(out: Path) -> m3u8.M3U8:
    return m3u8.loads((out / "hls/cmaf/360p/index.m3u8").read_text())


async def test_segments_then_playlist_then_master_and_local_copies_are_dropped(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(work, DirSink(out), kinds=("cmaf",), dash=False, window=3)
    packager.begin_run("r1", ["360p"])
    ffmpeg = FfmpegLike(work, "r1")
    first = ffmpeg.segment()
    await packager.sync()
    assert (out / "hls/cmaf/360p" / first).read_bytes() == b"r1-0"
    assert (out / "hls/cmaf/360p/r1_init_360p.mp4").exists()
    assert not (ffmpeg.dir / first).exists(), "published segments leave the local disk"
    master = m3u8.loads((out / "hls/cmaf/master.m3u8").read_text())
    assert [p.uri for p in master.playlists] == ["360p/index.m3u8"]
    assert [s.uri for s in _playlist(out).segments] == [first]
    assert packager.stats.segments == {"cmaf": 1} and packager.stats.last_segment_at is not None


async def test_window_slides_and_old_segments_are_deleted_a_few_segments_later(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(work, DirSink(out), kinds=("cmaf",), dash=False, window=3)
    packager.begin_run("r1", ["360p"])
    ffmpeg = FfmpegLike(work, "r1")
    names = []
    for _ in range(3 + packager_module.DELETE_LAG_SEGMENTS + 2):
        names.append(ffmpeg.segment())
        await packager.sync()
    playlist = _playlist(out)
    assert [s.uri for s in playlist.segments] == names[-3:]
    assert playlist.media_sequence == len(names) - 3
    assert not (out / "hls/cmaf/360p" / names[0]).exists() and not (out / "hls/cmaf/360p" / names[1]).exists()
    assert (out / "hls/cmaf/360p" / names[2]).exists(), "still within the deletion lag"


async def test_encoder_restart_continues_the_playlist_with_a_discontinuity_and_its_own_init(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(work, DirSink(out), kinds=("cmaf",), dash=False, window=6)
    packager.begin_run("r1", ["360p"])
    first = FfmpegLike(work, "r1")
    for _ in range(2):
        first.segment()
    await packager.finish(ended=False)  # crash: no ENDLIST
    assert not _playlist(out).is_endlist
    packager.begin_run("r2", ["360p"])
    second = FfmpegLike(work, "r2")
    second.segment()
    await packager.sync()
    playlist = _playlist(out)
    assert [s.discontinuity for s in playlist.segments] == [False, False, True]
    assert [s.init_section.uri for s in playlist.segments] == ["r1_init_360p.mp4"] * 2 + ["r2_init_360p.mp4"]
    assert (out / "hls/cmaf/360p/r1_init_360p.mp4").read_bytes() == b"init-r1"
    assert (out / "hls/cmaf/360p/r2_init_360p.mp4").read_bytes() == b"init-r2"
    await packager.finish(ended=True)
    assert _playlist(out).is_endlist


class FlakySink(DirSink):
    def __init__(self, root, fail: set[str]) -> None:
        super().__init__(root)
        self.fail = fail

    async def put(self, path, data):
        if any(path.endswith(f) for f in self.fail):
            raise SinkError(f"PUT {path}: HTTP 503")
        await super().put(path, data)

    async def put_file(self, path, local, keep):
        if any(path.endswith(f) for f in self.fail):
            raise SinkError(f"PUT {path}: HTTP 503")
        await super().put_file(path, local, keep)


async def test_a_segment_that_cannot_be_uploaded_is_not_listed(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    errors = []
    packager = Packager(
        work, FlakySink(out, {"_000001.m4s"}), kinds=("cmaf",), dash=False, on_error=lambda: errors.append(1)
    )
    packager.begin_run("r1", ["360p"])
    ffmpeg = FfmpegLike(work, "r1")
    for _ in range(3):
        ffmpeg.segment()
    await packager.sync()
    assert [s.uri for s in _playlist(out).segments] == ["r1_000000.m4s", "r1_000002.m4s"]
    assert packager.stats.upload_errors == 1 and errors == [1]


async def test_dash_is_mirrored_and_the_manifest_goes_last(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    dash = work / "dash"
    dash.mkdir(parents=True)
    packager = Packager(work, DirSink(out), kinds=(), dash=True)
    packager.begin_run("r1", ["360p"])
    (dash / "r1_init_0.m4s").write_bytes(b"i")
    (dash / "r1_0_000001.m4s").write_bytes(b"1")
    (dash / "r1_0_000002.m4s.tmp").write_bytes(b"partial")
    (dash / "r1.mpd").write_text('<MPD type="dynamic"/>')
    await packager.sync()
    assert (out / "dash/manifest.mpd").read_text() == '<MPD type="dynamic"/>'
    assert (out / "dash/r1_0_000001.m4s").exists() and not (out / "dash/r1_0_000002.m4s.tmp").exists()
    # A DASH-only stream counts its segments too: they are what says outputs are produced.
    assert packager.stats.segments == {"dash": 1} and packager.stats.last_segment_at is not None
    (dash / "r1_0_000001.m4s").unlink()  # ffmpeg slid it out of its window
    await packager.sync()
    assert not (out / "dash/r1_0_000001.m4s").exists()
    assert (out / "dash/r1_init_0.m4s").exists()


async def test_a_dash_init_segment_is_published_once_ffmpeg_has_written_it(tmp_path):
    """ffmpeg's dash muxer creates each init file when it starts and fills it only when it writes
    the first fragment of that representation; published in between, the origin kept an empty
    init for the whole run and every DASH viewer failed (dash.js: CHUNK_DEMUXER_ERROR_APPEND_FAILED)."""
    work, out = tmp_path / "work", tmp_path / "out"
    dash = work / "dash"
    dash.mkdir(parents=True)
    packager = Packager(work, DirSink(out), kinds=(), dash=True)
    packager.begin_run("r1", ["360p"])
    (dash / "r1_init_0.m4s").write_bytes(b"")
    (dash / "r1_init_1.m4s").write_bytes(b"")
    (dash / "r1_0_000001.m4s.tmp").write_bytes(b"first fragment")
    await packager.sync()
    assert not (out / "dash/r1_init_0.m4s").exists() and not (out / "dash/r1_init_1.m4s").exists()
    (dash / "r1_init_0.m4s").write_bytes(b"init 0")
    (dash / "r1_0_000001.m4s.tmp").rename(dash / "r1_0_000001.m4s")
    await packager.sync()
    assert (out / "dash/r1_init_0.m4s").read_bytes() == b"init 0"
    assert (out / "dash/r1_0_000001.m4s").exists()
    assert not (out / "dash/r1_init_1.m4s").exists(), "the audio init waits for the audio's first segment"
    (dash / "r1_init_1.m4s").write_bytes(b"init 1")
    (dash / "r1_1_000001.m4s").write_bytes(b"a1")
    await packager.sync()
    assert (out / "dash/r1_init_1.m4s").read_bytes() == b"init 1"


async def test_screenshot_is_sent_when_replaced(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    packager = Packager(work, DirSink(out), kinds=(), dash=False)
    (work / "screenshot.jpg").write_bytes(b"\xff\xd8one")
    await packager.sync()
    assert (out / "screenshot.jpg").read_bytes() == b"\xff\xd8one"
    (work / "screenshot.jpg").write_bytes(b"\xff\xd8second")
    await packager.sync()
    assert (out / "screenshot.jpg").read_bytes() == b"\xff\xd8second"


async def test_dir_sink_refuses_paths_outside_its_root(tmp_path):
    sink = DirSink(tmp_path / "out")
    try:
        await sink.put("../escape.m3u8", b"x")
    except SinkError:
        pass
    else:
        raise AssertionError("wrote outside the root")
    assert not (tmp_path / "escape.m3u8").exists()


async def test_a_new_process_continues_the_playlist_it_finds(tmp_path):
    out = tmp_path / "out"
    first = Packager(tmp_path / "work1", DirSink(out), kinds=("cmaf",), dash=False, window=4)
    first.begin_run("r1", ["360p"])
    ffmpeg = FfmpegLike(tmp_path / "work1", "r1")
    for _ in range(5):
        ffmpeg.segment()
        await first.sync()
    before = _playlist(out)
    assert before.media_sequence == 1
    # The pod restarts: a new packager, a new run, the same destination.
    second = Packager(tmp_path / "work2", DirSink(out), kinds=("cmaf",), dash=False, window=4)
    second.begin_run("r2", ["360p"])
    FfmpegLike(tmp_path / "work2", "r2").segment()
    await second.sync()
    after = _playlist(out)
    assert after.media_sequence == 2, "sequence numbers never go back"
    assert [s.uri for s in after.segments] == [s.uri for s in before.segments][1:] + ["r2_000000.m4s"]
    assert [s.discontinuity for s in after.segments] == [False, False, False, True]
    assert after.segments[-1].init_section.uri == "r2_init_360p.mp4"
    assert after.segments[0].init_section.uri == "r1_init_360p.mp4"
    assert after.segments[0].program_date_time == before.segments[1].program_date_time


async def test_looks_often_only_while_a_run_waits_for_its_first_segment(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(work, DirSink(out), kinds=("cmaf",), dash=False)
    fast, slow = packager_module.FIRST_SEGMENT_POLL_SECONDS, packager_module.POLL_SECONDS
    assert fast < slow
    assert packager.poll_seconds(0.0) == slow, "no run: nothing to wait for"
    packager.begin_run("r1", ["360p"])
    started = packager._run_started
    assert packager.poll_seconds(started + 1) == fast
    ffmpeg = FfmpegLike(work, "r1")
    ffmpeg.segment()
    await packager.sync()
    assert (out / "hls/cmaf/master.m3u8").exists()
    assert packager.poll_seconds(started + 1) == slow, "the run is on air: back to the steady pace"
    packager.begin_run("r2", ["360p"])
    assert packager.poll_seconds(packager._run_started + packager_module.FIRST_SEGMENT_FAST_SECONDS + 1) == slow, (
        "a run that never produces must not keep the packager busy"
    )


async def test_a_screenshot_that_cannot_be_read_does_not_hold_up_the_segments(tmp_path, caplog):
    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(work, DirSink(out), kinds=("cmaf",), dash=False, window=3)
    packager.begin_run("r1", ["360p"])
    ffmpeg = FfmpegLike(work, "r1")
    (work / "screenshot.jpg").mkdir()
    for _ in range(2):
        ffmpeg.segment()
        await packager.sync()
    assert len(_playlist(out).segments) == 2
    assert [r.message for r in caplog.records].count(
        f"cannot read the screenshot: [Errno 21] Is a directory: '{work / 'screenshot.jpg'}'"
    ) == 1
