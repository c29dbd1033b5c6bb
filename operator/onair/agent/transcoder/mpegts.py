"""Just enough MPEG-TS to splice two live sources into one encoder without restarting it.

The readers (``ffmpeg -i rtmp://... -c copy -f mpegts pipe:1``) run all the time, one per
source. ``Feed`` follows one reader's byte stream: packet alignment, PAT/PMT, which PIDs carry
video and audio, and a cache of the packets since the last video keyframe. ``Splicer`` makes
the single stream the encoder reads: it starts every source at a keyframe (with its PAT/PMT
first), shifts that source's PTS/DTS/PCR so the timeline continues where the previous source
stopped, and renumbers continuity counters, so the encoder's demuxer sees one uninterrupted
stream and the outputs need no discontinuity at all when the source changes.

Pure: bytes in, bytes out, no I/O and no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

PACKET = 188
SYNC = 0x47
PAT_PID = 0x0000
NULL_PID = 0x1FFF
WRAP = 1 << 33  # PTS/DTS are 33-bit counters of a 90 kHz clock
HALF = 1 << 32
CLOCK = 90_000

VIDEO_STREAM_TYPES = {0x01, 0x02, 0x10, 0x1B, 0x24, 0x42, 0xD1, 0xEA}
AUDIO_STREAM_TYPES = {0x03, 0x04, 0x0F, 0x11, 0x1C, 0x81, 0x87}
H264 = 0x1B
HEVC = 0x24

# A source without keyframes for this long (or this many bytes) has no usable cache.
MAX_GOP_PACKETS = 120_000  # ~22 MB: 20 s of 8 Mbit/s
# Video frames whose arrival is remembered: more than a cached GOP replayed at a splice holds.
MAX_ARRIVALS = 1024
# Frame durations we accept as measured; anything else is a gap, not a frame.
VIDEO_FRAME_RANGE = (CLOCK // 240, CLOCK // 5)
AUDIO_FRAME_RANGE = (CLOCK // 1000, CLOCK // 2)
DEFAULT_VIDEO_FRAME = CLOCK // 30
DEFAULT_AUDIO_FRAME = 1920  # 1024 AAC samples at 48 kHz
# Frames this far either side of a frame estimate when it was received (``Feed.received``).
RECEIVED_WINDOW = 5 * CLOCK
# Inside one source, a jump this large is a restart upstream, not a late frame.
JUMP_FORWARD = 5 * CLOCK
JUMP_BACKWARD = 1 * CLOCK


def sdiff(a: int, b: int) -> int:
    """``a - b`` on the 33-bit circle, in (-2^32, 2^32]."""
    return ((a - b + HALF) % WRAP) - HALF


# ----------------------------------------------------------------------------- packet fields
def pid_of(pkt: bytes | bytearray) -> int:
    return ((pkt[1] & 0x1F) << 8) | pkt[2]


def unit_start(pkt: bytes | bytearray) -> bool:
    return bool(pkt[1] & 0x40)


def has_adaptation(pkt: bytes | bytearray) -> bool:
    return bool(pkt[3] & 0x20)


def has_payload(pkt: bytes | bytearray) -> bool:
    return bool(pkt[3] & 0x10)


def payload_offset(pkt: bytes | bytearray) -> int:
    if has_adaptation(pkt):
        return 5 + pkt[4]
    return 4


def random_access(pkt: bytes | bytearray) -> bool:
    return has_adaptation(pkt) and pkt[4] > 0 and bool(pkt[5] & 0x40)


def has_pcr(pkt: bytes | bytearray) -> bool:
    return has_adaptation(pkt) and pkt[4] >= 7 and bool(pkt[5] & 0x10)


def read_pcr(pkt: bytes | bytearray) -> tuple[int, int]:
    base = (pkt[6] << 25) | (pkt[7] << 17) | (pkt[8] << 9) | (pkt[9] << 1) | (pkt[10] >> 7)
    ext = ((pkt[10] & 0x01) << 8) | pkt[11]
    return base, ext


def write_pcr(pkt: bytearray, base: int, ext: int) -> None:
    base %= WRAP
    pkt[6] = (base >> 25) & 0xFF
    pkt[7] = (base >> 17) & 0xFF
    pkt[8] = (base >> 9) & 0xFF
    pkt[9] = (base >> 1) & 0xFF
    pkt[10] = ((base & 0x01) << 7) | 0x7E | ((ext >> 8) & 0x01)
    pkt[11] = ext & 0xFF


def read_timestamp(buf: bytes | bytearray, i: int) -> int:
    return (
        (((buf[i] >> 1) & 0x07) << 30)
        | (buf[i + 1] << 22)
        | ((buf[i + 2] >> 1) << 15)
        | (buf[i + 3] << 7)
        | (buf[i + 4] >> 1)
    )


def write_timestamp(buf: bytearray, i: int, value: int) -> None:
    value %= WRAP
    buf[i] = (buf[i] & 0xF0) | (((value >> 30) & 0x07) << 1) | 0x01
    buf[i + 1] = (value >> 22) & 0xFF
    buf[i + 2] = (((value >> 15) & 0x7F) << 1) | 0x01
    buf[i + 3] = (value >> 7) & 0xFF
    buf[i + 4] = ((value & 0x7F) << 1) | 0x01


@dataclass
class PesTimes:
    """Where PTS/DTS sit in a PES-starting packet, and their values."""

    pts: Optional[int]
    dts: Optional[int]
    pts_at: int
    dts_at: int

    @property
    def decode(self) -> Optional[int]:
        return self.dts if self.dts is not None else self.pts


def pes_times(pkt: bytes | bytearray) -> Optional[PesTimes]:
    """PTS/DTS of the PES that starts in ``pkt`` (None if it does not start one or has none)."""
    if not unit_start(pkt) or not has_payload(pkt):
        return None
    p = payload_offset(pkt)
    if p + 14 > PACKET or pkt[p] != 0 or pkt[p + 1] != 0 or pkt[p + 2] != 1:
        return None
    flags = pkt[p + 7] >> 6
    pts = dts = None
    pts_at = dts_at = -1
    if flags & 0x2:
        pts_at = p + 9
        pts = read_timestamp(pkt, pts_at)
        if flags == 0x3 and p + 19 <= PACKET:
            dts_at = p + 14
            dts = read_timestamp(pkt, dts_at)
    return PesTimes(pts, dts, pts_at, dts_at)


def pes_missing(pkt: bytes | bytearray) -> Optional[int]:
    """Bytes of the PES starting in ``pkt`` that are still to come; None when it does not say
    (PES_packet_length 0, which video may use)."""
    p = payload_offset(pkt)
    if p + 6 > PACKET or pkt[p] != 0 or pkt[p + 1] != 0 or pkt[p + 2] != 1:
        return None
    length = (pkt[p + 4] << 8) | pkt[p + 5]
    if length == 0:
        return None
    return 6 + length - (PACKET - p)


def _nal_keyframe(payload: bytes | bytearray, codec: int) -> bool:
    """An IDR/IRAP NAL (or a parameter set, which encoders only send before one) in ``payload``."""
    i = 0
    end = len(payload) - 3
    while i < end:
        if payload[i] == 0 and payload[i + 1] == 0 and payload[i + 2] == 1:
            header = payload[i + 3]
            if codec == HEVC:
                nal = (header >> 1) & 0x3F
                if 16 <= nal <= 21 or nal in (32, 33, 34):
                    return True
            else:
                nal = header & 0x1F
                if nal in (5, 7):
                    return True
            i += 3
        else:
            i += 1
    return False


def _section(pkt: bytes | bytearray) -> Optional[bytes]:
    """The PSI section starting in this packet (PAT/PMT from ffmpeg always fit in one)."""
    if not unit_start(pkt) or not has_payload(pkt):
        return None
    p = payload_offset(pkt)
    if p >= PACKET:
        return None
    p += 1 + pkt[p]  # pointer_field
    if p + 3 > PACKET:
        return None
    length = ((pkt[p + 1] & 0x0F) << 8) | pkt[p + 2]
    end = min(PACKET, p + 3 + length)
    return bytes(pkt[p:end])


def parse_pat(pkt: bytes | bytearray) -> Optional[int]:
    """PID of the first program's PMT."""
    sec = _section(pkt)
    if not sec or sec[0] != 0x00:
        return None
    body = sec[8:-4]
    for i in range(0, len(body) - 3, 4):
        program = (body[i] << 8) | body[i + 1]
        if program != 0:
            return ((body[i + 2] & 0x1F) << 8) | body[i + 3]
    return None


@dataclass
class ProgramMap:
    pcr_pid: int
    streams: dict[int, int]  # pid -> stream_type
    # Looked up for every packet: worked out once, not per packet.
    video: Optional[int] = field(init=False, compare=False)
    audio: list[int] = field(init=False, compare=False)
    kinds: dict[int, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.video = next((pid for pid, t in self.streams.items() if t in VIDEO_STREAM_TYPES), None)
        self.audio = [pid for pid, t in self.streams.items() if t in AUDIO_STREAM_TYPES]
        self.kinds = {pid: ("v" if pid == self.video else "a") for pid in self.streams}


def parse_pmt(pkt: bytes | bytearray) -> Optional[ProgramMap]:
    sec = _section(pkt)
    if not sec or sec[0] != 0x02 or len(sec) < 16:
        return None
    pcr_pid = ((sec[8] & 0x1F) << 8) | sec[9]
    info_len = ((sec[10] & 0x0F) << 8) | sec[11]
    i = 12 + info_len
    streams: dict[int, int] = {}
    while i + 5 <= len(sec) - 4:
        stream_type = sec[i]
        pid = ((sec[i + 1] & 0x1F) << 8) | sec[i + 2]
        es_len = ((sec[i + 3] & 0x0F) << 8) | sec[i + 4]
        streams[pid] = stream_type
        i += 5 + es_len
    return ProgramMap(pcr_pid, streams)


# ----------------------------------------------------------------------------- one source
class Feed:
    """One reader's TS byte stream, packetised, with the packets since its last keyframe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._residual = b""
        self.pmt_pid: Optional[int] = None
        self.program: Optional[ProgramMap] = None
        self.pat: Optional[bytes] = None
        self.pmt: Optional[bytes] = None
        self.gop: list[bytes] = []  # starts with the PES-start packet of a video keyframe
        self.keyframes = 0
        self.bytes = 0
        self.resyncs = 0
        self._gop_first: Optional[int] = None  # decode time of the cached keyframe
        self._video_last: Optional[int] = None  # decode time of the latest video PES
        # Decode time of each recent video PES -> when its first packet was pushed (the caller's
        # clock): a frame replayed from the cache at a splice keeps the time it was received.
        self.arrivals: dict[int, float] = {}
        self._now: Optional[float] = None

    @property
    def video_pid(self) -> Optional[int]:
        return self.program.video if self.program else None

    @property
    def has_audio(self) -> bool:
        return bool(self.program and self.program.audio)

    @property
    def gop_seconds(self) -> float:
        """Media time the cache holds (what a splice from it would replay at once)."""
        if not self.gop or self._gop_first is None or self._video_last is None:
            return 0.0
        return max(0, sdiff(self._video_last, self._gop_first)) / CLOCK

    @property
    def ready(self) -> bool:
        """Can be spliced in now: program known and a keyframe cached."""
        return self.pat is not None and self.pmt is not None and bool(self.gop)

    def push(self, data: bytes, now: Optional[float] = None) -> tuple[list[bytes], Optional[int]]:
        """Packets completed by ``data`` (received at ``now``), and the index of the first video
        keyframe among them."""
        self.bytes += len(data)
        self._now = now
        buf = self._residual + data
        packets: list[bytes] = []
        i = 0
        n = len(buf)
        while i + PACKET <= n:
            if buf[i] != SYNC:
                # Lost sync (should not happen on a pipe): skip to the next plausible packet.
                nxt = buf.find(bytes([SYNC]), i + 1)
                self.resyncs += 1
                if nxt < 0:
                    i = n
                    break
                i = nxt
                continue
            packets.append(buf[i : i + PACKET])
            i += PACKET
        self._residual = buf[i:]
        key_at: Optional[int] = None
        for index, pkt in enumerate(packets):
            if self._observe(pkt) and key_at is None:
                key_at = index
        return packets, key_at

    def _observe(self, pkt: bytes) -> bool:
        """Update program state and the GOP cache; True if ``pkt`` starts a video keyframe."""
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        program = self.program
        # The bulk of the stream (no PES start, not a table): only the GOP cache cares.
        if program is not None and not pkt[1] & 0x40 and pid != self.pmt_pid and pid != PAT_PID:
            if self.gop and pid != NULL_PID:
                if len(self.gop) >= MAX_GOP_PACKETS:
                    self.gop = []  # no keyframe in sight: a stale cache would splice garbage
                else:
                    self.gop.append(pkt)
            return False
        if pid == PAT_PID:
            pmt_pid = parse_pat(pkt)
            if pmt_pid is not None:
                self.pat = pkt
                if pmt_pid != self.pmt_pid:
                    self.pmt_pid = pmt_pid
                    self.program = None
            return False
        if pid == self.pmt_pid:
            program = parse_pmt(pkt)
            if program is not None:
                self.pmt = pkt
                if self.program is None or program.streams != self.program.streams:
                    self.program = program
                    self.gop = []
            return False
        if self.program is None or pid == NULL_PID:
            return False
        keyframe = pid == self.program.video and self.is_keyframe(pkt)
        if pid == self.program.video and unit_start(pkt):
            times = pes_times(pkt)
            if times is not None and times.decode is not None:
                self._video_last = times.decode
                if keyframe:
                    self._gop_first = times.decode
                if self._now is not None:
                    self.arrivals.pop(times.decode, None)  # a clock restarted upstream: the newest wins
                    self.arrivals[times.decode] = self._now
                    if len(self.arrivals) > MAX_ARRIVALS:
                        del self.arrivals[next(iter(self.arrivals))]
        if keyframe:
            self.keyframes += 1
            self.gop = [pkt]
        elif self.gop:
            if len(self.gop) >= MAX_GOP_PACKETS:
                self.gop = []  # no keyframe in sight: a stale cache would splice garbage
            else:
                self.gop.append(pkt)
        return keyframe

    def is_keyframe(self, pkt: bytes) -> bool:
        if not unit_start(pkt):
            return False
        if random_access(pkt):
            return True
        codec = self.program.streams.get(pid_of(pkt), H264) if self.program else H264
        return _nal_keyframe(pkt[payload_offset(pkt) :], codec)

    def kind(self, pid: int) -> Optional[str]:
        return self.program.kinds.get(pid) if self.program else None

    def received(self, decode: int) -> Optional[float]:
        """When the frame of decode time ``decode`` came in, without the reader's chunking: the
        lower envelope of ``arrival - decode time`` of the frames around it (those that waited
        least), so two sources' frames compare within a frame rather than a read interval.
        None when no frame near it was seen."""
        best: Optional[float] = None
        for other, arrival in self.arrivals.items():
            delta = sdiff(other, decode)
            if -RECEIVED_WINDOW <= delta <= RECEIVED_WINDOW:
                estimate = arrival - delta / CLOCK
                if best is None or estimate < best:
                    best = estimate
        return best


# ----------------------------------------------------------------------------- the output
@dataclass
class _Track:
    last: Optional[int] = None  # last output decode timestamp
    frame: int = 0  # last measured frame (or PES) duration
    bounds: tuple[int, int] = VIDEO_FRAME_RANGE
    default: int = DEFAULT_VIDEO_FRAME
    emitted: Optional[int] = None  # ``last`` of the last PES actually sent

    def rollback(self) -> None:
        """Forget a held PES that a splice dropped: the timeline continues from what was sent."""
        self.last = self.emitted

    def advance(self, ts: int) -> None:
        if self.last is not None:
            step = sdiff(ts, self.last)
            if self.bounds[0] <= step <= self.bounds[1]:
                self.frame = step
        self.last = ts

    def next(self) -> Optional[int]:
        if self.last is None:
            return None
        return (self.last + (self.frame or self.default)) % WRAP


def _video_track() -> _Track:
    return _Track(bounds=VIDEO_FRAME_RANGE, default=DEFAULT_VIDEO_FRAME)


def _audio_track() -> _Track:
    return _Track(bounds=AUDIO_FRAME_RANGE, default=DEFAULT_AUDIO_FRAME)


@dataclass
class Splicer:
    """Turns packets of whichever feed is active into one continuous stream.

    Every PES is held back until it is known to be complete: a source that dies (or is switched
    away from) mid-frame would otherwise hand the decoder a truncated frame. A PES that declares
    its length (audio always; video below 64 KiB, as the readers write it) goes out as soon as
    that many bytes are in; one without (big keyframes) waits for the next PES on its PID, a
    frame of latency.
    """

    offset: int = 0
    splices: int = 0
    jumps: int = 0
    dropped_pes: int = 0
    video: _Track = field(default_factory=_video_track)
    audio: _Track = field(default_factory=_audio_track)
    _cc: dict[int, int] = field(default_factory=dict)
    _held: dict[int, list[bytes | bytearray]] = field(default_factory=dict)
    _held_ts: dict[int, Optional[int]] = field(default_factory=dict)
    _missing: dict[int, Optional[int]] = field(default_factory=dict)  # bytes a held PES still lacks
    _held_source: dict[int, int] = field(default_factory=dict)  # the source's decode time of a held PES
    _feed: Optional[Feed] = None
    # The last video frame sent: its feed and that feed's decode time (what viewers saw last, for
    # placing the next source's first frame after it). None after ``reset``: a new encoder.
    last_video: Optional[tuple[Feed, int]] = None
    # Every video PES retimed since the caller last took them: (output decode time, the source's,
    # whether the relation between the two changed there: a splice or a jump).
    video_frames: list[tuple[int, int, bool]] = field(default_factory=list)
    _new_piece: bool = True

    @property
    def feed(self) -> Optional[Feed]:
        return self._feed

    def splice(self, feed: Feed, packets: Iterable[bytes], hole: int = 0) -> bytes:
        """Start ``feed`` with ``packets`` (which must begin at a keyframe): its PAT/PMT first,
        timestamps shifted so they continue the output timeline, ``hole`` (90 kHz) after the
        last frame's end: picture that neither source delivered, left as time on the timeline
        rather than squeezed out, so the output stays as far behind capture as it was. Whatever
        the previous feed had not completed is dropped."""
        packets = list(packets)
        self._feed = feed
        self._drop_pending()
        self.splices += 1
        self._new_piece = True
        self.offset = self._continuing_offset(feed, packets, max(0, hole))
        head = [p for p in (feed.pat, feed.pmt) if p is not None]
        return self.forward(head + packets)

    def reset(self) -> None:
        """A new encoder process: nothing of the old stream is pending; the timeline goes on."""
        self._cc = {}
        self._drop_pending()
        self._feed = None
        self.last_video = None

    def _drop_pending(self) -> None:
        """Drop the PES packets held back incomplete: the tracks continue from what was sent."""
        self._held = {}
        self._held_ts = {}
        self._held_source = {}
        self._missing = {}
        self.video.rollback()
        self.audio.rollback()

    def _continuing_offset(self, feed: Feed, packets: list[bytes], hole: int) -> int:
        first: dict[str, int] = {}
        for pkt in packets:
            kind = feed.kind(pid_of(pkt))
            if kind is None or kind in first:
                continue
            times = pes_times(pkt)
            if times is not None and times.decode is not None:
                first[kind] = times.decode
            if len(first) == 2:
                break
        # Video leads: a gap in video costs duplicated frames, while audio that would overlap
        # is dropped below and audio gaps are filled by the encoder's resampler.
        for kind, track in (("v", self.video), ("a", self.audio)):
            wanted = track.next()
            if wanted is not None and kind in first:
                return (wanted + hole - first[kind]) % WRAP
        return self.offset

    def forward(self, packets: Iterable[bytes]) -> bytes:
        feed = self._feed
        if feed is None:
            return b""
        out = bytearray()
        for pkt in packets:
            pid = pid_of(pkt)
            kind = feed.kind(pid)
            if kind is None:
                buf = bytearray(pkt)
                if has_pcr(buf):
                    self._shift_pcr(buf)
                self._emit(out, buf, pid)
                continue
            if unit_start(pkt):
                self._release(out, pid, kind)
                buf = bytearray(pkt)
                if self._retime(buf, kind):
                    self._held[pid] = [buf]
                    self._missing[pid] = pes_missing(buf)
                else:
                    self.dropped_pes += 1
            elif pid in self._held:
                part: bytes | bytearray = pkt
                if has_pcr(pkt):  # copied only to be rewritten: most packets go out as they came
                    part = buf = bytearray(pkt)
                    self._shift_pcr(buf)
                self._held[pid].append(part)
                missing = self._missing.get(pid)
                if missing is not None:
                    self._missing[pid] = missing - (PACKET - payload_offset(part))
            else:
                continue  # the tail of a PES whose head was before the splice, or one we dropped
            missing = self._missing.get(pid)
            if missing is not None and missing <= 0:
                self._release(out, pid, kind)  # its declared length is in: complete, no need to wait
        return bytes(out)

    def _release(self, out: bytearray, pid: int, kind: str) -> None:
        self._missing.pop(pid, None)
        held = self._held.pop(pid, None)
        if held:
            for part in held:
                self._emit(out, part, pid)
            track = self.video if kind == "v" else self.audio
            track.emitted = self._held_ts.pop(pid, track.emitted)
            source = self._held_source.pop(pid, None)
            if kind == "v" and source is not None and self._feed is not None:
                self.last_video = (self._feed, source)

    def _emit(self, out: bytearray, buf: bytes | bytearray, pid: int) -> None:
        """Append one packet with its continuity counter renumbered (in ``out``: no copy)."""
        flags = buf[3]
        out += buf
        if flags & 0x10:  # has payload
            cc = (self._cc.get(pid, -1) + 1) & 0x0F
            self._cc[pid] = cc
            out[-PACKET + 3] = (flags & 0xF0) | cc
        elif pid in self._cc:
            out[-PACKET + 3] = (flags & 0xF0) | self._cc[pid]

    def _shift_pcr(self, buf: bytearray) -> None:
        base, ext = read_pcr(buf)
        write_pcr(buf, base + self.offset, ext)

    def _retime(self, buf: bytearray, kind: str) -> bool:
        """Shift the PES timestamps; False if this PES must be dropped (audio going backwards)."""
        if has_pcr(buf):
            self._shift_pcr(buf)
        times = pes_times(buf)
        if times is None or times.decode is None:
            return True
        track = self.video if kind == "v" else self.audio
        pid = pid_of(buf)
        out = (times.decode + self.offset) % WRAP
        if track.last is not None:
            step = sdiff(out, track.last)
            if step > JUMP_FORWARD or step < -JUMP_BACKWARD:
                # The source restarted its clock under us: continue the timeline instead.
                wanted = track.next()
                assert wanted is not None
                delta = sdiff(wanted, out)
                self.offset = (self.offset + delta) % WRAP
                out = wanted
                self.jumps += 1
                self._new_piece = True
                if has_pcr(buf):
                    base, ext = read_pcr(buf)
                    write_pcr(buf, base + delta, ext)
            elif kind == "a" and step <= 0:
                return False  # overlaps audio already sent (right after a splice)
        if times.pts is not None:
            write_timestamp(buf, times.pts_at, times.pts + self.offset)
        if times.dts is not None:
            write_timestamp(buf, times.dts_at, times.dts + self.offset)
        track.advance(out)
        self._held_ts[pid] = out
        self._held_source[pid] = times.decode
        if kind == "v":
            self.video_frames.append((out, times.decode, self._new_piece))
            self._new_piece = False
        return True


def first_video_decode_time(data: bytes) -> Optional[int]:
    """Decode time of the first video PES in ``data`` (the head of an MPEG-TS segment), or None."""
    pmt_pid: Optional[int] = None
    program: Optional[ProgramMap] = None
    for at in range(0, len(data) - PACKET + 1, PACKET):
        pkt = data[at : at + PACKET]
        if pkt[0] != SYNC:
            return None
        pid = pid_of(pkt)
        if pid == PAT_PID:
            pmt_pid = parse_pat(pkt)
        elif pmt_pid is not None and pid == pmt_pid:
            program = parse_pmt(pkt) or program
        elif program is not None and pid == program.video:
            times = pes_times(pkt)
            if times is not None and times.decode is not None:
                return times.decode
    return None
