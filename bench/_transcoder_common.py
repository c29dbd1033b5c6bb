"""Shared plumbing of the transcoder benchmarks: servers, sources, CPU accounting.

Benchmarks print figures and assert nothing; every process they start is killed on exit.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]
# The agents the bench starts must run this tree's code too, wherever `pip install -e` points.
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), str(ROOT)] + (
    [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))

from tests.fixtures.media import FFMPEG, PublisherFactory  # noqa: E402
from tests.fixtures.rtmp_server import RtmpServer  # noqa: E402
from tests.fixtures.transcoder import TranscoderAgentFactory, tagged_pids  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
CACHE = Path(os.environ.get("ONAIR_BENCH_CACHE", "/tmp/onair-bench"))


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes (their own, not their children's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


def _stat(pid: int) -> Optional[list[str]]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and every live descendant, plus what ``root``'s reaped
    children used (cutime + cstime), so a child that exits inside a window still counts."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))  # field 4: ppid
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = _stat(pid)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped descendants
        todo.extend(parents.get(pid, []))
    return total / CLK_TCK


def clip(width: int, height: int, fps: int = 30, seconds: int = 20, bitrate: str = "4000k") -> Path:
    """A pre-encoded H.264/AAC clip, so publishing it costs no encoding (looped with -c copy)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"clip_{width}x{height}_{fps}_{seconds}s.flv"
    if not path.exists():
        tmp = path.with_suffix(".tmp.flv")
        subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-b:v", bitrate,
                        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
                        "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(tmp)], check=True, timeout=600)
        tmp.rename(path)
    return path


def publish_clip(publishers: PublisherFactory, path: Path, url: str):
    return publishers.custom(["-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(path),
                              "-c", "copy", "-f", "flv", url])


def publish_color(publishers: PublisherFactory, url: str, color: str, size: str = "640x360"):
    return publishers.custom([
        "-loglevel", "error", "-re", "-f", "lavfi", "-i", f"color=c={color}:size={size}:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-g", "30", "-keyint_min", "30", "-c:a", "aac", "-b:a", "64k", "-f", "flv", url])


class Rig:
    """An RTMP server, publishers and transcoder agents under one temp dir, all torn down together."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.rtmp = RtmpServer(tmp / "nginx-rtmp")
        self.publishers = PublisherFactory(tmp)
        self.transcoders = TranscoderAgentFactory(tmp)
        self.extra: list = []  # more agent factories a benchmark started (closed first)

    def close(self) -> None:
        for factory in self.extra:
            with contextlib.suppress(Exception):
                factory.close()
        with contextlib.suppress(Exception):
            self.transcoders.close()
        with contextlib.suppress(Exception):
            self.publishers.close()
        with contextlib.suppress(Exception):
            self.rtmp.stop()


@contextlib.contextmanager
def rig(prefix: str) -> Iterator[Rig]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        r = Rig(Path(tmp))
        try:
            yield r
        finally:
            r.close()


def stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)
    median = values[len(values) // 2] if len(values) % 2 else sum(values[len(values) // 2 - 1:len(values) // 2 + 1]) / 2
    return f"min {values[0]:.2f} s, median {median:.2f} s, max {values[-1]:.2f} s (n={len(values)})"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait(predicate, timeout: float, interval: float = 0.05) -> Optional[float]:
    """Poll; the monotonic time the predicate first held, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    return None


__all__ = ["cpu_seconds", "tree_cpu_seconds", "clip", "publish_clip", "publish_color", "rig", "stats", "load", "wait", "tagged_pids"]
