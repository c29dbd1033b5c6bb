"""What ``broadcasting.zeroLatencyEncoding`` costs: picture quality and encoder CPU at the same bitrate.

The transcoder's own x264 options for one 720p30 rung (``ffmpeg_args.video_options``, the ladder's
bitrate, 1 s or 2 s GOP), without and with x264's zerolatency tune, on deterministic moving test
pictures (lavfi: ``testsrc2``, a zooming ``mandelbrot``, moving ``gradients``), made once into raw
YUV files so that the encoder's CPU is all that is counted. Each encode runs as fast as it goes;
then the encoded video is compared with the same raw frames (ffmpeg's ``ssim`` and ``psnr``
filters). Prints SSIM (and in dB), PSNR, the bitrate reached and the encoder's CPU seconds,
and zerolatency's figures against the default's side by side. The latency it saves is what
``bench/glass_to_glass.py --zero-latency-encoding`` measures. Synthetic pictures, not a camera's:
the figures show the direction and rough size of the cost, not a promise for every content.

    python3 bench/encoder_tune.py [--seconds 20] [--segment-seconds 1] [--preset veryfast]
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from onair.agent.transcoder.ffmpeg_args import EncoderPlan, video_options  # noqa: E402
from onair.render.ladder import build_ladder  # noqa: E402
from tests.fixtures.media import FFMPEG  # noqa: E402

SOURCES = {
    "testsrc2": "testsrc2=size=1280x720:rate=30,format=yuv420p",
    "mandelbrot": "mandelbrot=size=1280x720:rate=30,format=yuv420p",
    "gradients": "gradients=size=1280x720:rate=30:speed=0.02,format=yuv420p",
}
SSIM = re.compile(r"SSIM .*All:([0-9.]+) \(([0-9.inf]+)\)")
PSNR = re.compile(r"PSNR .*average:([0-9.inf]+)")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raw(source: str, seconds: float, out: Path) -> Path:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-t", f"{seconds:g}", str(out)],
        check=True, timeout=600,
    )  # fmt: skip
    return out


def encode(frames: Path, seconds: float, plan: EncoderPlan, out: Path) -> tuple[float, float]:
    """(CPU seconds, kbps) of one encode of the raw ``frames`` with the plan's video options."""
    before = children_cpu()
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(frames), "-map", "0:v", *video_options(plan),
         str(out)],
        check=True, timeout=600,
    )  # fmt: skip
    cpu = children_cpu() - before
    return cpu, out.stat().st_size * 8 / 1000 / seconds


def compare(frames: Path, encoded: Path) -> tuple[float, float, float]:
    """(SSIM, SSIM dB, PSNR dB) of ``encoded`` against the raw frames it was made from."""
    result = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostats", "-i", str(encoded), "-i", str(frames),
         "-lavfi", "[0:v]split[a][b];[1:v]split[c][d];[a][c]ssim;[b][d]psnr", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    ssim, psnr = SSIM.search(result.stderr), PSNR.search(result.stderr)
    if ssim is None or psnr is None:
        raise RuntimeError(f"no SSIM/PSNR in ffmpeg's output:\n{result.stderr[-2000:]}")
    return float(ssim.group(1)), float(ssim.group(2)), float(psnr.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--segment-seconds", type=float, default=1)
    parser.add_argument("--preset", default="veryfast")
    args = parser.parse_args()
    rung = build_ladder(["720p"], 1280, 720, 30)[0]
    print(
        f"720p30 at {rung.video_bitrate_kbps} kbps, x264 {args.preset}, GOP {args.segment_seconds:g} s, "
        f"{args.seconds:g} s per encode"
    )
    print(f"{'source':12} {'tune':12} {'SSIM':>7} {'SSIM dB':>8} {'PSNR dB':>8} {'kbps':>6} {'CPU s':>6}")
    with tempfile.TemporaryDirectory(prefix="encoder-tune-") as tmp:
        for name, source in SOURCES.items():
            frames = raw(source, args.seconds, Path(tmp) / f"{name}.y4m")
            figures = {}
            for zero_latency in (False, True):
                plan = EncoderPlan(
                    rungs=[rung], run_id="tune", fps=30, segment_seconds=args.segment_seconds,
                    preset=args.preset, zero_latency=zero_latency,
                )  # fmt: skip
                out = Path(tmp) / f"{name}-{zero_latency}.mp4"
                cpu, kbps = encode(frames, args.seconds, plan, out)
                ssim, ssim_db, psnr = compare(frames, out)
                tune = "zerolatency" if zero_latency else "default"
                figures[tune] = (ssim, ssim_db, psnr, kbps, cpu)
                print(f"{name:12} {tune:12} {ssim:7.4f} {ssim_db:8.2f} {psnr:8.2f} {kbps:6.0f} {cpu:6.1f}", flush=True)
            frames.unlink()
            (s0, db0, p0, k0, c0), (s1, db1, p1, k1, c1) = figures["default"], figures["zerolatency"]
            print(
                f"{name:12} {'zl - default':12} {s1 - s0:+7.4f} {db1 - db0:+8.2f} {p1 - p0:+8.2f} "
                f"{k1 / k0:5.2f}x {c1 / c0:5.2f}x"
            )


if __name__ == "__main__":
    main()
