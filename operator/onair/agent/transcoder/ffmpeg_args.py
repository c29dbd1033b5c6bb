"""ffmpeg command lines of the transcoder, built from data and nothing else.

Two kinds of process:

* a *reader* per source: remux (``-c copy``) whatever the source sends into MPEG-TS on stdout,
  video first, so the relay can splice sources whose PIDs and codecs line up;
* one *encoder* per run: MPEG-TS on stdin, the whole ladder encoded once, and the ``tee``
  muxer writing every packaging from those same encoded frames: HLS fMP4 (CMAF), HLS MPEG-TS,
  DASH, plus a JPEG screenshot as a second output and, with WHEP on, the WebRTC rendition as a
  third (see ``webrtc_output``). Everything lands under the encoder's working
  directory with the run id in every file name; the packager publishes from there.

Keyframes line up across rungs and segments because every rung gets the same
``-force_key_frames`` times (segment boundaries), a GOP of exactly one segment and no scene-cut
keyframes; segmenters cut at the first keyframe past each boundary, i.e. at the same instant in
every rung and every packaging.

Low-latency HLS (``part_seconds``): the HLS fMP4 muxer cuts on time (``split_by_time``) every part
duration instead of every segment, so each file it writes is one CMAF fragment (``moof`` +
``mdat``) of one part, renamed into place the moment it is complete; the packager forwards each
one at once and builds the segments from them. A part duration is a whole number of frames that
divides the GOP, so every segment boundary (a keyframe) is also a part boundary, in every rung.
No B-frames then (x264's zerolatency tune): with them a fragment cut on presentation time would
not be a clean cut in decoding order, and B-frames, lookahead and frame threads each hold frames
back before any part can be cut.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Sequence
from urllib.parse import urlsplit

from onair.api.agent import Rung
from onair.render.ladder import display_aspect, sample_aspect_ratio

# Seconds a reader waits on a silent connection before giving up (it is restarted at once).
READ_TIMEOUT_SECONDS = 10
# RTMP readers: how long ffmpeg may wait for a stream the FLV header announced but no packet
# has shown yet (a video-only publisher). Audio+video sources end probing as soon as both
# streams are decoded, whatever this is.
RTMP_ANALYZE_SECONDS = 1
DEFAULT_FPS = 30.0
# Encoder input analysis (microseconds of media): short when the plan knows the frame rate.
ENCODER_ANALYZE_US = 1_000_000
ENCODER_ANALYZE_FAST_US = 100_000


def reader_args(url: str, ffmpeg: str = "ffmpeg") -> list[str]:
    scheme = urlsplit(url).scheme.lower()
    args = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
    if scheme in ("rtmp", "rtmps", "http", "https"):
        args += ["-rw_timeout", str(READ_TIMEOUT_SECONDS * 1_000_000)]
    if scheme in ("rtmp", "rtmps"):
        # Probing is most of publish -> first playable. Stream copy needs no frame rate, yet
        # ffmpeg reads 40 frames (1.3 s at 30 fps) to estimate one from FLV's 1 ms timestamps;
        # the onMetaData framerate that nginx-rtmp passes on first is what the ladder uses.
        # No -fflags nobuffer: it discards the probed packets, i.e. the first keyframe.
        args += ["-fpsprobesize", "0", "-analyzeduration", str(RTMP_ANALYZE_SECONDS * 1_000_000)]
    args += [
        "-i", url,
        # Fixed stream order -> fixed PIDs (0x100 video, 0x101 audio) whatever order the source
        # announced its tracks in, so main and backup splice without a PMT change.
        "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-dn", "-sn",
        "-f", "mpegts",
        # One audio frame per PES: a splice drops at most one frame of overlapping audio.
        "-pes_payload_size", "0",
        # Video PES declare their length too (below 64 KiB): the splicer and the encoder's
        # demuxer pass a frame on once it is complete instead of waiting for the next one.
        "-omit_video_pes_length", "0",
        # Bytes leave as soon as they are muxed: a silent pipe must mean a silent source.
        "-flush_packets", "1", "-muxdelay", "0", "-muxpreload", "0",
        "-max_interleave_delta", "500000",
        "pipe:1",
    ]
    return args


@dataclass(frozen=True)
class EncoderPlan:
    rungs: Sequence[Rung]
    run_id: str
    segment_seconds: float = 2.0
    fps: Optional[float] = None  # the source's, for the GOP length of rungs that keep it
    has_audio: bool = True
    hls_cmaf: bool = True
    hls_mpegts: bool = True
    dash: bool = True
    low_latency: bool = False
    part_seconds: Optional[float] = None  # LL-HLS: ffmpeg's CMAF "segments" are parts this long
    zero_latency: bool = False  # x264's zerolatency tune; always with parts
    list_size: int = 20  # ffmpeg's own playlists: the packager makes the public ones
    dash_window: int = 8
    screenshot_width: int = 1080
    screenshot_interval_seconds: int = 10
    preset: str = "veryfast"
    ffmpeg: str = "ffmpeg"
    webrtc_url: Optional[str] = None  # WHEP: where the WebRTC rendition goes (the agent's loopback listener)

    @property
    def encoded(self) -> list[Rung]:
        return [r for r in self.rungs if not r.passthrough]


# Local layout, relative to the encoder's working directory. The packager mirrors it.
def cmaf_playlist(run_id: str, rung: str = "%v") -> str:
    return f"hls/cmaf/{rung}/{run_id}.m3u8"


def ts_playlist(run_id: str, rung: str = "%v") -> str:
    return f"hls/ts/{rung}/{run_id}.m3u8"


def master_name(run_id: str) -> str:
    return f"{run_id}_master.m3u8"


def dash_manifest(run_id: str) -> str:
    return f"dash/{run_id}.mpd"


SCREENSHOT = "screenshot.jpg"


def tee_value(value: str) -> str:
    """Quote a tee slave option value: the tee muxer unescapes twice (slave list, then options)."""
    if "'" in value or "|" in value:
        raise ValueError(f"cannot pass {value!r} through the tee muxer")
    return "\\'" + value + "\\'"


def tee_slave(fmt: str, target: str, options: dict[str, str]) -> str:
    opts = ":".join([f"f={fmt}"] + [f"{k}={v}" for k, v in options.items()])
    return f"[{opts}]{target}"


def profile_for(rung: Rung) -> str:
    # Baseline/main for small rungs keeps old phones happy; high saves bits where they count.
    return "high" if min(rung.width, rung.height) >= 720 else "main"


def frame_rate(fps: float) -> str:
    """ffmpeg's rate for what ffmpeg printed (``29.97 fps``): NTSC rates exactly, as N/1001."""
    if abs(fps - round(fps)) < 0.005:
        return str(round(fps))
    ntsc = round(fps * 1.001)
    if abs(ntsc / 1.001 - fps) < 0.01:
        return f"{ntsc * 1000}/1001"
    return f"{fps:g}"


def gop_frames(fps: float, segment_seconds: float) -> int:
    return max(1, int(round(fps * segment_seconds)))


def part_seconds(fps: Optional[float], segment_seconds: float, target_seconds: float) -> float:
    """The LL-HLS part duration nearest ``target_seconds`` that is a whole number of frames dividing the GOP.

    Rounded down to the microsecond: the muxer cuts at the first frame at or after each multiple,
    so a hair short lands on the frame, a hair long would land one frame later.
    """
    rate = fps or DEFAULT_FPS
    gop = gop_frames(rate, segment_seconds)
    divisors = [d for d in range(1, gop + 1) if gop % d == 0]
    frames = min(divisors, key=lambda d: (abs(d / rate - target_seconds), -d))
    return int(frames / rate * 1_000_000) / 1_000_000


def _sar(rung: Rung, dar: Fraction) -> str:
    sar = sample_aspect_ratio(rung, dar)
    return f"{sar.numerator}/{sar.denominator}"


# WHEP: the WebRTC rendition. One keyframe a second bounds how long a new viewer (who starts at
# a keyframe) and a viewer who lost packets (aiortc cannot ask a shared encoder for a keyframe)
# wait for a picture; Opus at WebRTC's usual voice-and-music rate.
WEBRTC_GOP_SECONDS = 1.0
WEBRTC_MAX_HEIGHT = 720
WEBRTC_AUDIO_KBPS = 96


def webrtc_rung(plan: EncoderPlan) -> Rung:
    """The rung whose size and bitrate the WebRTC rendition takes: the largest encoded one up to
    720p (a browser decodes baseline H.264 in software; WebRTC viewers are latency-, not
    quality-first), else the smallest."""
    rungs = plan.encoded or list(plan.rungs)
    fitting = [r for r in rungs if r.height <= WEBRTC_MAX_HEIGHT]
    return max(fitting, key=lambda r: r.height) if fitting else min(rungs, key=lambda r: r.height)


def filter_graph(plan: EncoderPlan) -> str:
    encoded = plan.encoded
    shots = 1 if plan.screenshot_interval_seconds > 0 else 0
    webrtc = 1 if plan.webrtc_url else 0
    branches = len(encoded) + shots + webrtc
    parts = []
    labels = [f"[s{i}]" for i in range(branches)]
    parts.append(f"[0:v:0]split={branches}{''.join(labels)}" if branches > 1 else "[0:v:0]null[s0]")
    dar = display_aspect(encoded) if encoded else Fraction(16, 9)
    for i, rung in enumerate(encoded):
        chain = []
        if rung.fps:
            chain.append(f"fps={rung.fps:g}")
        # Exact W:H from the ladder (what scale=-2:H gives for this source, fixed even if a
        # backup of another size takes over: the encoders cannot change size mid-run), and the
        # SAR that keeps every rung at one display aspect (DASH requires it).
        chain.append(f"scale={rung.width}:{rung.height}")
        # setsar reduces the ratio to terms <= max (default 100, i.e. 640/639 -> 1): lift that.
        chain.append(f"setsar=sar={_sar(rung, dar)}:max=1000000")
        chain.append("format=yuv420p")  # what every H.264 profile we ask for can carry
        parts.append(f"[s{i}]{','.join(chain)}[v{i}]")
    if shots:
        interval = plan.screenshot_interval_seconds
        parts.append(f"[s{len(encoded)}]fps=1/{interval},scale={plan.screenshot_width}:-2,setsar=1[shot]")
    if webrtc:
        rung = webrtc_rung(plan)
        chain = [f"fps={rung.fps:g}"] if rung.fps else []
        # Square pixels: a browser shows WebRTC video at its coded size, ignoring the SAR.
        chain += [f"scale={rung.width}:{rung.height}", "setsar=1", "format=yuv420p"]
        parts.append(f"[s{len(encoded) + shots}]{','.join(chain)}[webrtc]")
    return ";".join(parts)


def video_options(plan: EncoderPlan) -> list[str]:
    args: list[str] = []
    seg = plan.segment_seconds
    for i, rung in enumerate(plan.rungs):
        if rung.passthrough:
            args += [f"-c:v:{i}", "copy"]
            continue
        fps = rung.fps or plan.fps or DEFAULT_FPS
        gop = gop_frames(fps, seg)
        kbps = rung.video_bitrate_kbps
        if plan.fps and not rung.fps:
            args += [f"-r:v:{i}", frame_rate(plan.fps)]  # not the short probe's guess (see _input_probe)
        args += [
            f"-c:v:{i}", "libx264", f"-preset:v:{i}", plan.preset,
            # x264 buffers bframes+1 frames between its lookahead thread and the encoder by
            # default: 4 frames of latency in every segment, the first one included. One frame
            # keeps the thread (0 would serialise it: ~18% less throughput measured); the output
            # is bit-identical.
            f"-x264-params:v:{i}", "sync-lookahead=1",
            # Per output stream: a bare -profile:v would also hit a copied (passthrough) rung.
            f"-profile:v:{i}", profile_for(rung),
            f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{int(kbps * 1.1)}k", f"-bufsize:v:{i}", f"{kbps * 2}k",
            f"-g:v:{i}", str(gop), f"-keyint_min:v:{i}", str(gop), f"-sc_threshold:v:{i}", "0",
            f"-force_key_frames:v:{i}", f"expr:gte(t,n_forced*{seg:g})",
        ]
        if plan.zero_latency or plan.part_seconds:
            # x264's zerolatency tune: no B-frames, no lookahead, slice threads instead of frame
            # threads; each of those otherwise holds frames back (10 of lookahead at veryfast, one
            # per frame thread), a third of a second before a part or segment can be cut, that
            # every viewer would wait too.
            args += [f"-tune:v:{i}", "zerolatency", f"-bf:v:{i}", "0"]
    # tee hands packets to several muxers: the parameter sets must be in the stream headers.
    args += ["-flags:v", "+global_header"]
    return args


def _audio_options(plan: EncoderPlan) -> list[str]:
    if not plan.has_audio:
        return []
    args = ["-c:a", "aac", "-ar", "48000", "-ac", "2", "-flags:a", "+global_header",
            # Splices leave tiny audio gaps/overlaps: fill and trim them, keep A/V in sync.
            "-af", "aresample=async=1"]
    for i, rung in enumerate(plan.rungs):
        args += [f"-b:a:{i}", f"{rung.audio_bitrate_kbps}k"]
    return args


def var_stream_map(plan: EncoderPlan) -> str:
    variants = []
    for i, rung in enumerate(plan.rungs):
        streams = [f"v:{i}"] + ([f"a:{i}"] if plan.has_audio else [])
        variants.append(",".join(streams + [f"name:{rung.name}"]))
    return " ".join(variants)


def _hls_slave(plan: EncoderPlan, kind: str) -> str:
    run = plan.run_id
    ext = "m4s" if kind == "cmaf" else "ts"
    parts = plan.part_seconds if kind == "cmaf" else None
    options = {
        "hls_time": f"{parts:.6f}" if parts else f"{plan.segment_seconds:g}",
        # Parts: as many seconds as segments would list, so a slow scan never loses one.
        "hls_list_size": str(round(plan.list_size * plan.segment_seconds / parts) if parts else plan.list_size),
        # temp_file: a file the packager sees under its final name is complete. Parts: cut on time,
        # which ffmpeg will not combine with independent_segments (the packager says which are).
        "hls_flags": "temp_file+omit_endlist+split_by_time" if parts else "independent_segments+temp_file+omit_endlist",
        "hls_segment_type": "fmp4" if kind == "cmaf" else "mpegts",
        "hls_segment_filename": f"hls/{kind}/%v/{run}_%06d.{ext}",
        "master_pl_name": master_name(run),
        "var_stream_map": tee_value(var_stream_map(plan)),
    }
    if kind == "cmaf":
        # ffmpeg expands %v here only when there are several variants (and then insists on it).
        variant = "%v" if len(plan.rungs) > 1 else plan.rungs[0].name
        options["hls_fmp4_init_filename"] = f"{run}_init_{variant}.mp4"
    target = cmaf_playlist(run) if kind == "cmaf" else ts_playlist(run)
    return tee_slave("hls", target, options)


def _dash_slave(plan: EncoderPlan) -> str:
    run = plan.run_id
    streams = "id=0,streams=v id=1,streams=a" if plan.has_audio else "id=0,streams=v"
    # The passthrough rung stays out of DASH: the dash muxer cannot start a copied stream whose
    # parameter sets only arrive in-band, and its GOP would not line up anyway. One audio
    # rendition is enough for DASH; the per-rung audio copies exist for muxed HLS.
    select = [f"v:{i}" for i, rung in enumerate(plan.rungs) if not rung.passthrough]
    if plan.has_audio:
        select.append("a:0")
    # LL-DASH addresses segments by number from availabilityStartTime (no SegmentTimeline): a
    # timeline lists a segment only once it is complete, so a player could not ask for the one
    # still being written, which the origin serves chunk by chunk.
    chunked = plan.low_latency and plan.part_seconds is not None
    options = {
        "select": tee_value(",".join(select)),
        "seg_duration": f"{plan.segment_seconds:g}",
        "use_template": "1",
        "use_timeline": "0" if chunked else "1",
        "window_size": str(plan.dash_window),
        "extra_window_size": str(plan.dash_window),
        "remove_at_exit": "0",
        "adaptation_sets": tee_value(streams),
        "init_seg_name": tee_value(f"{run}_init_$RepresentationID$.m4s"),
        "media_seg_name": tee_value(f"{run}_$RepresentationID$_$Number%06d$.m4s"),
    }
    if plan.low_latency:
        options.update({"streaming": "1", "ldash": "1"})
    if chunked:
        # One CMAF chunk (moof+mdat) per part duration, written to the segment's file as it is made:
        # the packager streams the growing file to the origin.
        options.update({"frag_type": "duration", "frag_duration": f"{plan.part_seconds:.6f}"})
    return tee_slave("dash", dash_manifest(run), options)


def _input_probe(plan: EncoderPlan) -> list[str]:
    """How long the encoder analyses its pipe before it encodes anything.

    The relay starts every stream with PAT/PMT and a keyframe, so the streams and their codecs
    are known from the first packets. MPEG-TS may add streams at any time, though, so ffmpeg
    reads for the whole ``analyzeduration`` whatever it finds: that delays every first
    segment. What a short analysis gets wrong is the frame rate (guessed from a few frames of
    FLV's millisecond timestamps, 29.4 for 30), which sets the rate of the encoded rungs; when
    the plan knows the source's rate the rungs get it explicitly (``-r``) and a tenth of a
    second of analysis is enough to decode the first frames.
    """
    analyze = ENCODER_ANALYZE_FAST_US if plan.fps else ENCODER_ANALYZE_US
    return ["-probesize", "1000000", "-analyzeduration", str(analyze)]


def webrtc_output(plan: EncoderPlan) -> list[str]:
    """The WHEP rendition: H.264 every browser decodes and every viewer gets as is, Opus audio.

    Encoded once per stream; the agent forwards its packets to every viewer (``whep.py``), so it
    must suit WebRTC as it leaves ffmpeg: constrained baseline (no B-frames, which WebRTC
    receivers do not reorder for, no CABAC), x264's zerolatency tune (no lookahead, no frame
    threads: nothing held back), SPS/PPS before every keyframe (no global header: a viewer joins
    at any keyframe), a short GOP. MPEG-TS to the agent's loopback listener, each frame flushed as
    soon as it is muxed and its PES length declared, so the demuxer hands it over at once.
    """
    assert plan.webrtc_url
    rung = webrtc_rung(plan)
    fps = rung.fps or plan.fps or DEFAULT_FPS
    gop = gop_frames(fps, WEBRTC_GOP_SECONDS)
    kbps = rung.video_bitrate_kbps
    args = ["-map", "[webrtc]", "-c:v", "libx264", "-preset:v", plan.preset, "-tune:v", "zerolatency",
            "-profile:v", "baseline", "-bf:v", "0", "-x264-params:v", "repeat-headers=1",
            "-b:v", f"{kbps}k", "-maxrate:v", f"{int(kbps * 1.1)}k", "-bufsize:v", f"{kbps}k",
            "-g:v", str(gop), "-keyint_min:v", str(gop), "-sc_threshold:v", "0"]
    if plan.fps and not rung.fps:
        args += ["-r:v", frame_rate(plan.fps)]
    if plan.has_audio:
        args += ["-map", "0:a:0", "-c:a", "libopus", "-b:a", f"{WEBRTC_AUDIO_KBPS}k", "-ar", "48000", "-ac", "2",
                 "-application", "lowdelay", "-frame_duration", "20", "-af", "aresample=async=1"]
    args += ["-f", "mpegts", "-pes_payload_size", "0", "-omit_video_pes_length", "0",
             "-flush_packets", "1", "-muxdelay", "0", "-muxpreload", "0", plan.webrtc_url]
    return args


def encoder_args(plan: EncoderPlan) -> list[str]:
    if not plan.rungs:
        raise ValueError("an encoder needs at least one rung")
    args = [
        plan.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-stats", "-stats_period", "1",
        # Overwrite: the screenshot keeps one name across runs, and every encoder after the first
        # (a crash, a source with or without audio, a broadcast started again) finds the last
        # one's file in the working directory; without -y ffmpeg exits at once, forever.
        "-y",
        "-f", "mpegts", *_input_probe(plan), "-thread_queue_size", "1024",
        # WHEP: the decoder's frame threads hold one frame each before any output sees it; slice
        # threads hold none (a 1080p H.264 source decodes far faster than real time on one core).
        *(["-thread_type:v", "slice"] if plan.webrtc_url else []),
        "-i", "pipe:0",
        "-filter_complex", filter_graph(plan),
    ]
    for rung in plan.rungs:
        args += ["-map", "0:v:0" if rung.passthrough else f"[v{plan.encoded.index(rung)}]"]
    if plan.has_audio:
        for _ in plan.rungs:
            args += ["-map", "0:a:0"]
    args += video_options(plan) + _audio_options(plan)
    args += ["-max_muxing_queue_size", "4096"]
    slaves = []
    if plan.hls_cmaf:
        slaves.append(_hls_slave(plan, "cmaf"))
    if plan.hls_mpegts:
        slaves.append(_hls_slave(plan, "ts"))
    if plan.dash:
        slaves.append(_dash_slave(plan))
    if slaves:
        args += ["-f", "tee", "|".join(slaves)]
    if plan.screenshot_interval_seconds > 0:
        args += ["-map", "[shot]", "-c:v", "mjpeg", "-q:v", "3", "-f", "image2", "-update", "1",
                 "-atomic_writing", "1", SCREENSHOT]
    if plan.webrtc_url:
        args += webrtc_output(plan)
    return args
