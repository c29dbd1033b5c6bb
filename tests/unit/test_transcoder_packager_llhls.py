"""The packager's LL-HLS path against a directory laid out the way ffmpeg's HLS muxer writes parts
(split_by_time CMAF fragments), with hand-made boxes (no ffmpeg needed): every part published at
once, segments made of their parts at the next keyframe part, nothing lost at a restart."""

from __future__ import annotations

from pathlib import Path

from onair.agent.hls import parse_media_playlist as origin_parse
from onair.agent.transcoder.packager import Packager
from onair.agent.transcoder.sinks import DirSink
from tests.unit.test_transcoder_fmp4 import fragment, init_segment, traf
from tests.unit.test_transcoder_packager import MASTER

NON_SYNC = 0x00010000


class FfmpegParts:
    """ffmpeg's hls muxer with split_by_time: one fragment per 0.2 s part, a keyframe every fifth."""

    def __init__(self, work: Path, run: str, rung: str = "360p", keyframe_every: int = 5) -> None:
        self.work, self.run, self.rung = work, run, rung
        self.keyframe_every = keyframe_every
        self.dir = work / "hls/cmaf" / rung
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0
        (self.dir / f"{run}_init_{rung}.mp4").write_bytes(init_segment(trex_flags=NON_SYNC))
        (work / "hls/cmaf" / f"{run}_master.m3u8").write_text(MASTER.format(run=run))

    def part(self) -> tuple[str, bytes]:
        name = f"{self.run}_{self.n:06d}.m4s"
        data = fragment(traf(1, first_flags=0 if self.n % self.keyframe_every == 0 else NON_SYNC)) + name.encode()
        (self.dir / name).write_bytes(data)
        self.n += 1
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            "#EXT-X-TARGETDURATION:0",
            "#EXT-X-MEDIA-SEQUENCE:0",
            f'#EXT-X-MAP:URI="{self.run}_init_{self.rung}.mp4"',
        ]
        for i in range(self.n):
            lines += ["#EXTINF:0.200000,", f"{self.run}_{i:06d}.m4s"]
        (self.dir / f"{self.run}.m3u8").write_text("\n".join(lines) + "\n")
        return name, data


def published(out: Path):
    return origin_parse((out / "hls/cmaf/360p/index.m3u8").read_text())


async def test_parts_go_out_one_by_one_and_segments_are_made_of_them(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(work, DirSink(out), kinds=("cmaf",), dash=False, window=8)
    packager.begin_run("r1", ["360p"], part_seconds=0.2, segment_seconds=1.0)
    ffmpeg = FfmpegParts(work, "r1")
    written = {}
    for i in range(7):
        name, data = ffmpeg.part()
        written[name] = data
        await packager.sync()
        assert (out / "hls/cmaf/360p" / name).read_bytes() == data, "a part is published the moment it exists"
        assert not (ffmpeg.dir / name).exists()
        pl = published(out)
        assert pl.part_target == 0.2
        assert pl.preload_hint == f"r1_{i + 1:06d}.m4s"
        if i < 5:
            assert not pl.segments and [p.uri for p in pl.open_parts] == [f"r1_{n:06d}.m4s" for n in range(i + 1)]
    # The sixth part began with a keyframe: the first five became segment 0.
    pl = published(out)
    assert [s.uri for s in pl.segments] == ["seg_r1_000000.m4s"]
    segment = pl.segments[0]
    assert [p.independent for p in segment.parts] == [True, False, False, False, False]
    assert segment.duration == 1.0
    assert (out / "hls/cmaf/360p/seg_r1_000000.m4s").read_bytes() == b"".join(
        written[f"r1_{n:06d}.m4s"] for n in range(5)
    )
    assert [p.uri for p in pl.open_parts] == ["r1_000005.m4s", "r1_000006.m4s"]
    assert (out / "hls/cmaf/master.m3u8").exists()
    assert packager.stats.segments == {"cmaf": 1}


async def test_what_was_cut_when_the_encoder_stops_is_a_segment_and_the_next_run_comes_under_its_init(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(work, DirSink(out), kinds=("cmaf",), dash=False, window=8)
    packager.begin_run("r1", ["360p"], part_seconds=0.2, segment_seconds=1.0)
    ffmpeg = FfmpegParts(work, "r1")
    for _ in range(8):
        ffmpeg.part()
        await packager.sync()
    await packager.finish(ended=False)  # a crash: no ENDLIST, nothing lost
    pl = published(out)
    assert [(s.uri, round(s.duration, 3)) for s in pl.segments] == [
        ("seg_r1_000000.m4s", 1.0),
        ("seg_r1_000005.m4s", 0.6),
    ]
    assert not pl.open_parts and pl.preload_hint is None and not pl.endlist
    packager.begin_run("r2", ["360p"], part_seconds=0.2, segment_seconds=1.0)
    second = FfmpegParts(work, "r2")
    second.part()
    await packager.sync()
    pl = published(out)
    assert pl.open_map_uri == "r2_init_360p.mp4" and [p.uri for p in pl.open_parts] == ["r2_000000.m4s"]
    for _ in range(5):
        second.part()
        await packager.sync()
    text = (out / "hls/cmaf/360p/index.m3u8").read_text()
    assert "#EXT-X-DISCONTINUITY" in text and text.index('URI="r2_init_360p.mp4"') < text.index("seg_r2_000000.m4s")
    await packager.finish(ended=True)
    assert published(out).endlist


async def test_parts_without_a_keyframe_still_close_segments_and_say_why(tmp_path, caplog):
    work, out = tmp_path / "work", tmp_path / "out"
    packager = Packager(work, DirSink(out), kinds=("cmaf",), dash=False, window=8)
    packager.begin_run("r1", ["360p"], part_seconds=0.2, segment_seconds=1.0)
    ffmpeg = FfmpegParts(work, "r1", keyframe_every=1000)  # the encoder's keyframes and the parts do not line up
    for _ in range(17):
        ffmpeg.part()
        await packager.sync()
    pl = published(out)
    assert [s.uri for s in pl.segments] == ["seg_r1_000000.m4s"]  # plain HLS goes on, 3 s segments
    assert "no part began with a keyframe" in caplog.text
