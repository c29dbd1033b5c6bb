"""The ABR ladder: quality track names (GetStream's ``quality_tracks``, Gcore's quality sets) plus
the source size become the renditions the transcoder encodes.

Rules every ladder obeys, whoever builds it (the operator from the Livestream spec, the
transcoder again once it has seen the real source):

* never upscale: a track taller than the source is dropped; if every track is, the source size
  itself becomes the only rung, because a ladder must never be empty;
* ``720p`` names the *short* side, so a portrait 1080x1920 source gets a 720x1280 rung (GetStream
  does not mix orientations in one stream; neither do we);
* even dimensions (4:2:0 chroma needs them), aspect ratio of the source kept;
* bitrates from a table for 16:9 at 30 fps, scaled by pixel count and by frame rate;
* ``source`` is the passthrough rung: the source video copied, not re-encoded.

Pure: no I/O, so the operator and the agent compute the same ladder from the same inputs.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Iterable, Optional, Sequence

from onair.api.agent import Rung

DEFAULT_QUALITY_TRACKS = ("1080p", "720p", "480p", "360p")
SOURCE = "source"

# short side -> (video kbps at 16:9 and <=30 fps, audio kbps). Close to what Gcore's and
# Apple's authoring guidelines use for H.264.
BITRATES: dict[int, tuple[int, int]] = {
    2160: (14000, 160),
    1440: (9000, 160),
    1080: (5000, 128),
    720: (2800, 128),
    540: (2000, 128),
    480: (1400, 128),
    360: (800, 96),
    240: (400, 64),
    144: (200, 64),
}
HIGH_FPS_FACTOR = 1.5  # above 30 fps a rung needs about half as many bits again
_TRACK = re.compile(r"^(?P<short>\d{2,4})p(?P<fps>\d{2,3})?$")


class LadderError(ValueError):
    """A quality track name nobody can encode (shown to the user as is)."""


def even(value: float) -> int:
    """Nearest even integer, at least 2."""
    return max(2, int(round(value / 2.0)) * 2)


def parse_track(name: str) -> tuple[int, Optional[float]]:
    """``"720p"`` -> (720, None); ``"720p60"`` -> (720, 60.0)."""
    match = _TRACK.match(name.strip().lower())
    if not match:
        raise LadderError(f"unknown quality track {name!r}: expected e.g. '720p', '1080p60' or 'source'")
    short = int(match["short"])
    if short < 2 or short > 4320:
        raise LadderError(f"quality track {name!r} is out of range")
    return short, (float(match["fps"]) if match["fps"] else None)


def default_bitrates(short_side: int) -> tuple[int, int]:
    """(video, audio) kbps for a 16:9 rung of this short side at <=30 fps, interpolated."""
    sizes = sorted(BITRATES)
    if short_side <= sizes[0]:
        video, audio = BITRATES[sizes[0]]
        return max(100, int(video * short_side / sizes[0])), audio
    if short_side >= sizes[-1]:
        video, audio = BITRATES[sizes[-1]]
        return int(video * (short_side / sizes[-1]) ** 2), audio
    for low, high in zip(sizes, sizes[1:]):
        if low <= short_side <= high:
            # Bits grow with pixels, i.e. with the square of the short side.
            lo_v, lo_a = BITRATES[low]
            hi_v, hi_a = BITRATES[high]
            weight = (short_side**2 - low**2) / (high**2 - low**2)
            return int(round(lo_v + weight * (hi_v - lo_v))), (lo_a if weight < 0.5 else hi_a)
    raise AssertionError("unreachable")


def rung_size(short_side: int, source_width: int, source_height: int) -> tuple[int, int]:
    """Width and height of a rung whose short side is ``short_side``, source aspect kept."""
    if short_side >= min(source_width, source_height):
        return even(source_width), even(source_height)
    if source_width >= source_height:
        return even(short_side * source_width / source_height), even(short_side)
    return even(short_side), even(short_side * source_height / source_width)


def video_bitrate(width: int, height: int, fps: Optional[float]) -> int:
    short = min(width, height)
    video, _ = default_bitrates(short)
    nominal_area = short * short * 16 / 9
    # An ultra-wide or 4:3 picture has more or fewer pixels than the 16:9 the table assumes.
    area_factor = min(1.5, max(0.6, (width * height) / nominal_area))
    fps_factor = HIGH_FPS_FACTOR if fps and fps > 31 else 1.0
    return int(round(video * area_factor * fps_factor))


def _rung(
    name: str,
    width: int,
    height: int,
    fps: Optional[float],
    passthrough: bool = False,
    video_kbps: Optional[int] = None,
    source_fps: Optional[float] = None,
) -> Rung:
    """``fps=None`` keeps the source rate, which is then what the bitrate must pay for."""
    _, audio = default_bitrates(min(width, height))
    return Rung(
        name=name,
        width=width,
        height=height,
        video_bitrate_kbps=video_kbps or video_bitrate(width, height, fps or source_fps),
        audio_bitrate_kbps=audio,
        fps=fps,
        passthrough=passthrough,
    )


def build_ladder(
    quality_tracks: Sequence[str],
    source_width: int,
    source_height: int,
    source_fps: Optional[float] = None,
    source_bitrate_kbps: Optional[int] = None,
) -> list[Rung]:
    """Rungs for ``quality_tracks`` on a ``source_width``x``source_height`` source, biggest first.

    A track with a frame rate (``720p30``) caps the rung's fps; otherwise the rung keeps the
    source rate (``fps=None``). Duplicates (two tracks that both fall back to the source size)
    collapse into one rung.
    """
    if source_width < 2 or source_height < 2:
        raise LadderError(f"source size {source_width}x{source_height} is not a picture")
    tracks = list(quality_tracks) or list(DEFAULT_QUALITY_TRACKS)
    source_short = min(source_width, source_height)
    rungs: list[Rung] = []
    seen: set[tuple[int, int, Optional[float], bool]] = set()

    def add(rung: Rung) -> None:
        key = (rung.width, rung.height, rung.fps, rung.passthrough)
        if key not in seen:
            seen.add(key)
            rungs.append(rung)

    encoded = []
    for name in tracks:
        if name.strip().lower() == SOURCE:
            continue
        short, fps_cap = parse_track(name)
        encoded.append((short, fps_cap, name.strip().lower()))
    for short, fps_cap, name in encoded:
        if short > source_short:
            continue  # never upscale
        width, height = rung_size(short, source_width, source_height)
        fps = min(fps_cap, source_fps) if (fps_cap and source_fps) else fps_cap
        if fps is not None and source_fps is not None and fps >= source_fps:
            fps = None  # the cap does not bite: keep the source rate untouched
        add(_rung(name, width, height, fps, source_fps=source_fps))
    if not rungs and encoded:
        # Every track is bigger than the source: encode the source size rather than nothing.
        width, height = rung_size(source_short, source_width, source_height)
        add(_rung(f"{min(width, height)}p", width, height, None, source_fps=source_fps))
    if any(t.strip().lower() == SOURCE for t in tracks):
        add(
            _rung(
                SOURCE,
                source_width,
                source_height,
                None,
                passthrough=True,
                video_kbps=source_bitrate_kbps or video_bitrate(source_width, source_height, source_fps),
            )
        )
    rungs.sort(key=lambda r: (r.passthrough, -min(r.width, r.height), -(r.fps or 1000)))
    return rungs


def fit_ladder(
    ladder: Iterable[Rung], source_width: int, source_height: int, source_fps: Optional[float] = None
) -> list[Rung]:
    """A configured ladder adjusted to the source actually received.

    The operator may have computed the ladder before anyone published (default 1080p source);
    the transcoder calls this once it knows the real size, so the rules above hold for what is
    really encoded: same names and bitrates, widths recomputed for the real aspect ratio,
    upscaling rungs dropped, the passthrough rung given the real size.
    """
    fitted: list[Rung] = []
    seen: set[tuple[int, int, bool]] = set()
    source_short = min(source_width, source_height)
    rungs = list(ladder)
    for rung in rungs:
        if rung.passthrough:
            width, height = source_width, source_height
        else:
            short = min(rung.width, rung.height)
            if short > source_short:
                continue
            width, height = rung_size(short, source_width, source_height)
        key = (width, height, rung.passthrough)
        if key in seen:
            continue
        seen.add(key)
        fitted.append(rung.model_copy(update={"width": width, "height": height}))
    if not any(not r.passthrough for r in fitted) and any(not r.passthrough for r in rungs):
        width, height = rung_size(source_short, source_width, source_height)
        smallest = min((r for r in rungs if not r.passthrough), key=lambda r: min(r.width, r.height))
        fitted.insert(0, _rung(f"{min(width, height)}p", width, height, smallest.fps, source_fps=source_fps))
    return fitted


def sample_aspect_ratio(rung: Rung, display_aspect: Fraction) -> Fraction:
    """The SAR that makes ``rung`` display at exactly ``display_aspect``.

    Even rounding makes 854x480 not exactly 16:9; DASH refuses representations of different
    aspect ratios in one AdaptationSet (ffmpeg's dash muxer errors out), so each rung carries
    the tiny SAR correction instead. 1:1 whenever the rounding was exact.
    """
    return display_aspect * Fraction(rung.height, rung.width)


def display_aspect(rungs: Sequence[Rung]) -> Fraction:
    """The aspect ratio the ladder shares: the biggest encoded rung's, which rounds least."""
    biggest = max(rungs, key=lambda r: r.width * r.height)
    return Fraction(biggest.width, biggest.height)
