"""Re-encode decoded WebRTC frames to H.264 + AAC as an FLV byte stream.

aiortc hands us decoded frames, so the WHIP path must encode again; ultrafast/zerolatency x264
at the source size keeps that cheap. Encoding runs on one thread per session so the agent's event
loop (and /status) never waits for it.

The FLV goes into a pipe read by an ffmpeg remux that does the RTMP publish: libavformat's RTMP
client holds the GIL while it waits for nginx, and nginx waits for this very process to answer
``on_publish``, so publishing from in here would deadlock.
"""

from __future__ import annotations

import logging
import queue
import threading
from fractions import Fraction
from typing import BinaryIO, Optional

import av

log = logging.getLogger("onair.agent.ingest.encoder")

MS = Fraction(1, 1000)  # FLV timestamps are milliseconds
AUDIO_RATE = 48000
AAC_FRAME = 1024


def video_bitrate(width: int, height: int, fps: float = 30.0) -> int:
    """~0.1 bit per pixel per frame, bounded: enough for the transcoder to work from."""
    return int(min(8_000_000, max(500_000, width * height * fps * 0.1)))


class FlvEncoder:
    """``put_video``/``put_audio`` from any thread; ``error`` is set when the output failed."""

    def __init__(self, output: BinaryIO, name: str, fps: float = 30.0, max_queue: int = 240) -> None:
        self.output = output
        self.name = name
        self.fps = fps
        self.error: Optional[str] = None
        self.frames_out = 0
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name=f"whip-encoder-{name}", daemon=True)
        self._dropped = 0
        self._closed = threading.Event()

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def put_video(self, frame: av.VideoFrame, t: float) -> None:
        self._put(("v", frame, t))

    def put_audio(self, frame: av.AudioFrame, t: float) -> None:
        self._put(("a", frame, t))

    def _put(self, item) -> None:
        if self._closed.is_set():
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped += 1
            if self._dropped in (1, 100) or self._dropped % 1000 == 0:
                log.warning("WHIP %s: encoder is behind, dropped %d frames (CPU starved?)", self.name, self._dropped)

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)

    # encoder thread ----------------------------------------------------------------------
    def _run(self) -> None:
        container = None
        try:
            first = self._next_video()
            if first is None:
                return
            frame, t0 = first
            width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
            container = av.open(self.output, mode="w", format="flv", options={"flvflags": "no_duration_filesize"})
            vstream = container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.bit_rate = video_bitrate(width, height, self.fps)
            vstream.time_base = MS
            gop = max(1, int(round(self.fps * 2)))
            vstream.codec_context.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "g": str(gop),
                "keyint_min": str(gop),
                "sc_threshold": "0",
                "maxrate": str(vstream.bit_rate),
                "bufsize": str(vstream.bit_rate * 2),
            }
            astream = container.add_stream("aac", rate=AUDIO_RATE)
            astream.layout = "stereo"
            astream.bit_rate = 128_000
            astream.time_base = Fraction(1, AUDIO_RATE)
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            fifo = av.AudioFifo()
            audio_start: Optional[float] = None
            samples_out = 0
            last_video_ms = -1
            log.info(
                "WHIP %s: encoding %dx%d H.264 (%d kbps) + AAC", self.name, width, height, vstream.bit_rate // 1000
            )
            pending = [("v", frame, t0)]
            while True:
                item = pending.pop() if pending else self._queue.get()
                if item is None:
                    break
                kind, frm, t = item
                rel = max(0.0, t - t0)
                if kind == "v":
                    ms = int(rel * 1000)
                    if ms <= last_video_ms:
                        continue  # x264 and FLV need strictly increasing timestamps
                    last_video_ms = ms
                    out = frm.reformat(width=width, height=height, format="yuv420p")
                    out.pts, out.time_base = ms, MS
                    out.pict_type = av.video.frame.PictureType.NONE
                    for packet in vstream.encode(out):
                        container.mux(packet)
                    self.frames_out += 1
                else:
                    if audio_start is None:
                        audio_start = rel
                    frm.pts = None
                    for res in resampler.resample(frm):
                        fifo.write(res)
                    while fifo.samples >= AAC_FRAME:
                        chunk = fifo.read(AAC_FRAME)
                        assert chunk is not None  # the fifo holds at least one whole frame
                        chunk.pts = int(audio_start * AUDIO_RATE) + samples_out
                        chunk.time_base = Fraction(1, AUDIO_RATE)
                        samples_out += AAC_FRAME
                        for packet in astream.encode(chunk):
                            container.mux(packet)
            for stream in (vstream, astream):
                for packet in stream.encode(None):
                    container.mux(packet)
        except Exception as exc:  # the RTMP side refused or dropped us: the session must end
            self.error = f"{type(exc).__name__}: {exc}"
            if not self._closed.is_set():
                log.warning("WHIP %s: FLV output failed: %s", self.name, self.error)
        finally:
            self._closed.set()
            for closable in (container, self.output):
                try:
                    if closable is not None:
                        closable.close()  # EOF tells the remux to finish the publish cleanly
                except Exception:
                    pass

    def _next_video(self) -> Optional[tuple]:
        """Audio that arrives before the first picture is dropped: the stream starts on video."""
        while True:
            item = self._queue.get()
            if item is None:
                return None
            kind, frame, t = item
            if kind == "v":
                return frame, t
