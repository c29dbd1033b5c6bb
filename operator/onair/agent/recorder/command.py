"""The ffmpeg command line of one recording run: stream copy into split, fragmented MP4.

Fragmented MP4 (empty moov, a fragment at every keyframe and at least every half second) keeps
every finished fragment playable when ffmpeg dies without writing a trailer (SIGKILL, OOM,
power). ``flush_packets`` hands each fragment to the kernel as soon as it is complete; without it
ffmpeg flushes in 32 KiB blocks and a kill leaves half a fragment behind. What a kill loses is
the fragment still in memory: at most half a second. The segment muxer splits at the first keyframe after each
``split_seconds`` without a gap, and numbers parts from ``start_number`` so a resumed session
continues after the part already on disk.

Probing is bounded on purpose. Stream copy never needs the frame rate, yet ffmpeg would read
40 frames to estimate it from FLV's 1 ms timestamps (2.7 s of a 15 fps stream before the first
packet is written), and an FLV reader waits ``analyzeduration`` (5 s by default) for the audio
stream the RTMP header announces even when the publisher sends none. The agent's first-media
timeout adds ``PROBE_SECONDS`` on top of its stall timeout, so a slow probe is never taken for
a dead source.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .hls import HlsSource

MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof"
FRAGMENT_MICROSECONDS = 500_000
# Longest ffmpeg analyses its input before the first packet is written.
PROBE_SECONDS = 2
# ffmpeg prints a progress block this often; the first one comes this long after media starts.
PROGRESS_PERIOD_SECONDS = 1
PROBE_ARGS = ["-fpsprobesize", "0", "-analyzeduration", str(PROBE_SECONDS * 1_000_000)]



def first_media_timeout_seconds(stall_timeout_seconds: float) -> float:
    """How long a run may go without media after its start before the source counts as not live.

    Connecting and probing come before the first progress block: killing ffmpeg while it still
    probes a live source ("Immediate exit requested") would retry the same way forever.
    """
    return stall_timeout_seconds + PROBE_SECONDS + PROGRESS_PERIOD_SECONDS


@dataclass(frozen=True)
class RecordingRun:
    """Everything that varies between two runs of the recording ffmpeg."""

    output_pattern: str
    split_seconds: int
    start_number: int
    rtmp_url: Optional[str] = None
    hls: Optional[HlsSource] = None
    # -3: start like a player, a few segments behind the live edge. A session that resumes after
    # a drop starts at the newest segment instead, so the part does not repeat the previous one.
    hls_live_start_index: int = -3
    # Sent as Authorization: Bearer with every HLS request (the origin's internal read token).
    bearer_token: Optional[str] = None


def input_args(run: RecordingRun) -> list[str]:
    if run.hls is not None:
        start = str(run.hls_live_start_index)
        # The HLS demuxer passes -headers on to every playlist, init segment and segment it opens.
        headers = ["-headers", f"Authorization: Bearer {run.bearer_token}\r\n"] if run.bearer_token else []
        args = [*PROBE_ARGS, *headers, "-live_start_index", start, "-i", run.hls.video_url]
        if run.hls.audio_url:
            args += [*PROBE_ARGS, *headers, "-live_start_index", start, "-i", run.hls.audio_url]
        return args
    if run.rtmp_url is None:
        raise ValueError("a recording run needs an RTMP URL or an HLS source")
    return [*PROBE_ARGS, "-i", run.rtmp_url]


def map_args(run: RecordingRun) -> list[str]:
    if run.hls is not None and run.hls.audio_url:
        return ["-map", "0:v:0", "-map", "1:a:0"]
    # Optional maps: an audio-less (or video-less) source is still recorded.
    return ["-map", "0:v:0?", "-map", "0:a:0?"]


def ffmpeg_argv(run: RecordingRun, ffmpeg: str = "ffmpeg") -> list[str]:
    if run.split_seconds <= 0:
        raise ValueError("split_seconds must be positive")
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning",
        # Machine-readable progress on stdout drives the duration and the stall watchdog.
        "-nostats", "-progress", "pipe:1", "-stats_period", str(PROGRESS_PERIOD_SECONDS),
        *input_args(run),
        *map_args(run),
        "-c", "copy",
        "-f", "segment",
        "-segment_time", str(run.split_seconds),
        "-segment_start_number", str(run.start_number),
        "-reset_timestamps", "1",
        "-segment_format", "mp4",
        "-segment_format_options", f"movflags={MOVFLAGS}:frag_duration={FRAGMENT_MICROSECONDS}:flush_packets=1",
        run.output_pattern,
    ]
