"""The TS splicer on hand-built packets: every byte that matters is known here."""

from __future__ import annotations

from onair.agent.transcoder.mpegts import (
    PACKET,
    WRAP,
    Feed,
    Splicer,
    parse_pat,
    parse_pmt,
    pes_missing,
    pes_times,
    pid_of,
    read_pcr,
    read_timestamp,
    has_pcr,
    write_pcr,
    write_timestamp,
)

PMT_PID, VIDEO, AUDIO = 0x1000, 0x100, 0x101
FRAME, AFRAME = 3000, 1920


def _packet(pid: int, payload: bytes, *, start: bool, cc: int = 0, rai: bool = False, pcr: int | None = None) -> bytes:
    adaptation = b""
    if rai or pcr is not None:
        flags = (0x40 if rai else 0) | (0x10 if pcr is not None else 0)
        body = bytearray([flags])
        if pcr is not None:
            body += bytes(6)
        adaptation = bytes([len(body)]) + body
    room = PACKET - 4 - len(adaptation)
    payload = payload[:room]
    if len(payload) < room:  # stuff through the adaptation field, as muxers do
        pad = room - len(payload)
        if not adaptation:
            adaptation = bytes([pad - 1]) + (bytes([0]) + b"\xff" * (pad - 2) if pad > 1 else b"")
        else:
            adaptation = bytes([adaptation[0] + pad]) + adaptation[1:] + b"\xff" * pad
    afc = (0x20 if adaptation else 0) | 0x10
    pkt = bytearray([0x47, (0x40 if start else 0) | (pid >> 8), pid & 0xFF, afc | cc]) + adaptation + payload
    assert len(pkt) == PACKET
    if pcr is not None:
        write_pcr(pkt, pcr, 0)
    return bytes(pkt)


def _section(table_id: int, body: bytes) -> bytes:
    length = len(body) + 5 + 4
    head = bytes([table_id, 0xB0 | (length >> 8), length & 0xFF, 0, 1, 0xC1, 0, 0])
    return b"\x00" + head + body + b"\x00\x00\x00\x00"  # pointer field; CRC unchecked


def pat() -> bytes:
    return _packet(0, _section(0x00, bytes([0, 1, 0xE0 | (PMT_PID >> 8), PMT_PID & 0xFF])), start=True)


def pmt(audio: bool = True) -> bytes:
    streams = bytes([0x1B, 0xE0 | (VIDEO >> 8), VIDEO & 0xFF, 0xF0, 0])
    if audio:
        streams += bytes([0x0F, 0xE0 | (AUDIO >> 8), AUDIO & 0xFF, 0xF0, 0])
    body = bytes([0xE0 | (VIDEO >> 8), VIDEO & 0xFF, 0xF0, 0]) + streams
    return _packet(PMT_PID, _section(0x02, body), start=True)


def pes(
    pid: int,
    pts: int,
    dts: int | None = None,
    *,
    key: bool = False,
    size: int = 400,
    pcr: int | None = None,
    tag: int = 0,
    bounded: bool = False,
) -> list[bytes]:
    """A PES split into packets; ``tag`` fills the payload so tests can tell frames apart;
    ``bounded`` declares its length (PES_packet_length), as muxers do for audio."""
    header = bytearray([0, 0, 1, 0xE0 if pid == VIDEO else 0xC0, 0, 0, 0x80])
    if dts is None:
        header += bytes([0x80, 5, 0x20]) + bytes(4)
        write_timestamp(header, 9, pts)
    else:
        header += bytes([0xC0, 10, 0x30]) + bytes(4) + bytes([0x10]) + bytes(4)
        write_timestamp(header, 9, pts)
        write_timestamp(header, 14, dts)
    nal = b"\x00\x00\x00\x01\x65" if key else b"\x00\x00\x00\x01\x41"
    data = bytes(header) + nal + bytes([tag]) * size
    if bounded:
        data = data[:4] + (len(data) - 6).to_bytes(2, "big") + data[6:]
    packets = []
    first = True
    while data:
        pkt = _packet(pid, data, start=first, rai=key and first, pcr=pcr if first else None)
        used = PACKET - 4 - (1 + pkt[4] if pkt[3] & 0x20 else 0)
        data = data[used:]
        packets.append(pkt)
        first = False
    return packets


def stream(start: int, frames: int, *, gop: int = 5, tag: int = 0, audio: bool = True) -> list[bytes]:
    """PAT, PMT, then ``frames`` video frames (a keyframe every ``gop``) with audio interleaved."""
    out = [pat(), pmt(audio)]
    for n in range(frames):
        ts = start + n * FRAME
        out += pes(VIDEO, ts + FRAME, ts, key=n % gop == 0, pcr=ts, tag=tag)
        if audio:
            out += pes(AUDIO, start + n * AFRAME, size=100, tag=tag)
    return out


def frames(data: bytes, pid: int = VIDEO) -> list[tuple[int, int]]:
    """(decode timestamp, tag) of every PES starting in ``data`` on ``pid``."""
    found = []
    for i in range(0, len(data), PACKET):
        pkt = data[i : i + PACKET]
        if pid_of(pkt) == pid:
            times = pes_times(pkt)
            if times is not None:
                found.append((times.decode, pkt[-1]))
    return found


def ccs(data: bytes, pid: int) -> list[int]:
    return [data[i + 3] & 0x0F for i in range(0, len(data), PACKET) if pid_of(data[i : i + PACKET]) == pid]


def test_timestamp_and_pcr_round_trip_including_the_33_bit_wrap():
    buf = bytearray(b"\x21" + bytes(4))
    for value in (0, 1, 90000, WRAP - 1, WRAP + 5):
        write_timestamp(buf, 0, value)
        assert read_timestamp(buf, 0) == value % WRAP
        assert buf[0] & 0xF0 == 0x20  # the prefix nibble survives
    pkt = bytearray(_packet(VIDEO, b"", start=False, pcr=0))
    write_pcr(pkt, WRAP + 12345, 299)
    assert has_pcr(pkt) and read_pcr(pkt) == (12345, 299)


def test_feed_finds_program_and_keyframes_across_arbitrary_chunk_boundaries():
    data = b"".join(stream(90000, 12, gop=5))
    feed = Feed("main")
    keys = 0
    for i in range(0, len(data), 1000):  # chunks that split packets
        _, key_at = feed.push(data[i : i + 1000])
        keys += key_at is not None
    assert feed.program is not None and feed.video_pid == VIDEO and feed.has_audio
    assert feed.keyframes == 3 and keys == 3
    assert feed.ready
    assert pes_times(feed.gop[0]).decode == 90000 + 10 * FRAME  # cache starts at the last keyframe


def test_feed_resyncs_after_garbage():
    data = b"\x00\x01garbage" + b"".join(stream(0, 6))
    feed = Feed("x")
    packets, _ = feed.push(data)
    assert feed.resyncs == 1 and feed.ready
    assert all(p[0] == 0x47 for p in packets)


def test_pat_pmt_parsing():
    assert parse_pat(pat()) == PMT_PID
    program = parse_pmt(pmt())
    assert program.video == VIDEO and program.audio == [AUDIO] and program.pcr_pid == VIDEO
    assert parse_pmt(pmt(audio=False)).audio == []


def test_splice_continues_the_timeline_and_the_continuity_counters():
    main, backup = Feed("main"), Feed("backup")
    splicer = Splicer()
    packets, key_at = main.push(b"".join(stream(90000, 10, tag=1)))
    out = splicer.splice(main, packets[key_at:])
    # The backup has run on its own clock (far away) for a while; its cache starts at a keyframe.
    backup.push(b"".join(stream(5_000_000, 8, tag=2)))
    out += splicer.splice(backup, backup.gop)
    more, _ = backup.push(b"".join(stream(5_000_000 + 8 * FRAME, 4, tag=2)[2:]))
    out += splicer.forward(more)

    video = frames(out)
    assert [tag for _, tag in video][:9] == [1] * 9  # main's 10th frame was still held: dropped
    assert set(tag for _, tag in video[9:]) == {2}
    steps = [b - a for (a, _), (b, _) in zip(video, video[1:])]
    assert steps == [FRAME] * len(steps), "video timestamps must run on without a jump"
    assert video[0][0] == 90000
    audio = frames(out, AUDIO)
    assert all(b > a for (a, _), (b, _) in zip(audio, audio[1:])), "audio never goes backwards"
    for pid in (VIDEO, AUDIO, 0, PMT_PID):
        seq = ccs(out, pid)
        assert all((b - a) % 16 == 1 for a, b in zip(seq, seq[1:])), pid
    # PAT/PMT of the new feed precede its first frame.
    first_backup = next(
        i for i in range(0, len(out), PACKET) if pid_of(out[i : i + PACKET]) == VIDEO and out[i + PACKET - 1] == 2
    )
    assert pid_of(out[first_backup - 2 * PACKET : first_backup - PACKET]) == 0
    assert pid_of(out[first_backup - PACKET : first_backup]) == PMT_PID
    assert splicer.splices == 2 and splicer.jumps == 0


def test_pcr_moves_with_the_timestamps():
    main, backup = Feed("main"), Feed("backup")
    splicer = Splicer()
    packets, key_at = main.push(b"".join(stream(0, 5, audio=False)))
    out = splicer.splice(main, packets[key_at:])
    backup.push(b"".join(stream(777_000, 5, audio=False)))
    out += splicer.splice(backup, backup.gop)
    more, _ = backup.push(b"".join(stream(777_000 + 5 * FRAME, 2, audio=False)[2:]))
    out += splicer.forward(more)
    for i in range(0, len(out), PACKET):
        pkt = out[i : i + PACKET]
        if has_pcr(pkt):
            times = pes_times(pkt)
            assert read_pcr(pkt)[0] == times.decode  # the builder puts PCR == DTS


def test_packets_before_the_first_unit_start_are_not_forwarded():
    feed = Feed("main")
    splicer = Splicer()
    packets, key_at = feed.push(b"".join(stream(0, 6)))
    tail = [p for p in packets[key_at + 1 :] if pid_of(p) == VIDEO and not p[1] & 0x40][:1]
    assert tail
    splicer.splice(feed, packets[key_at : key_at + 1])
    assert splicer.forward(tail) == b""  # held behind its PES start, nothing emitted yet
    fresh = Splicer()
    fresh._feed = feed  # a splice that begins mid-PES must drop the orphan continuation
    assert fresh.forward(tail) == b""


def test_a_clock_jump_inside_one_source_is_smoothed():
    feed = Feed("main")
    splicer = Splicer()
    packets, key_at = feed.push(b"".join(stream(0, 6, audio=False)))
    out = splicer.splice(feed, packets[key_at:])
    restarted, _ = feed.push(b"".join(stream(50 * 90000, 6, audio=False)[2:]))
    out += splicer.forward(restarted)
    video = [ts for ts, _ in frames(out)]
    assert all(b - a == FRAME for a, b in zip(video, video[1:]))
    assert splicer.jumps == 1


def test_timeline_survives_the_33_bit_wrap():
    feed = Feed("main")
    splicer = Splicer()
    packets, key_at = feed.push(b"".join(stream(WRAP - 3 * FRAME, 8, audio=False)))
    out = splicer.splice(feed, packets[key_at:])
    video = [ts for ts, _ in frames(out)]
    assert video[3] == 0 and splicer.jumps == 0


def test_a_feed_without_a_keyframe_is_not_ready():
    feed = Feed("main")
    feed.push(pat() + pmt() + b"".join(pes(VIDEO, 3000, 0, key=False)))
    assert feed.program is not None and not feed.ready


def test_a_pes_that_declares_its_length_goes_out_as_soon_as_it_is_complete():
    feed = Feed("main")
    splicer = Splicer()
    head, key_at = feed.push(pat() + pmt() + b"".join(pes(VIDEO, 3000, 0, key=True, bounded=True, tag=1)))
    out = splicer.splice(feed, head[key_at:])
    assert frames(out) == [(0, 1)], "complete by its length: no need to wait for the next frame"
    two = pes(VIDEO, 6000, 3000, size=600, bounded=True, tag=2)
    assert len(two) > 2
    packets, _ = feed.push(b"".join(two[:-1]))
    assert splicer.forward(packets) == b"", "incomplete: held"
    packets, _ = feed.push(two[-1])
    assert frames(splicer.forward(packets)) == [(3000, 2)]
    # Without a length (big video frames) the next PES start is what says it is complete.
    packets, _ = feed.push(b"".join(pes(VIDEO, 9000, 6000, tag=3)))
    assert splicer.forward(packets) == b""
    packets, _ = feed.push(b"".join(pes(VIDEO, 12000, 9000, bounded=True, tag=4)))
    assert frames(splicer.forward(packets)) == [(6000, 3), (9000, 4)]


def test_a_bounded_pes_cut_short_by_a_splice_is_still_dropped():
    main, backup = Feed("main"), Feed("backup")
    splicer = Splicer()
    head, key_at = main.push(pat() + pmt(audio=False) + b"".join(pes(VIDEO, 3000, 0, key=True, bounded=True, tag=1)))
    out = splicer.splice(main, head[key_at:])
    cut = pes(VIDEO, 6000, 3000, size=600, bounded=True, tag=2)[:-1]  # main dies mid-frame
    packets, _ = main.push(b"".join(cut))
    out += splicer.forward(packets)
    backup.push(pat() + pmt(audio=False) + b"".join(pes(VIDEO, 900_000, 897_000, key=True, bounded=True, tag=3)))
    out += splicer.splice(backup, backup.gop)
    assert [tag for _, tag in frames(out)] == [1, 3]
    assert [ts for ts, _ in frames(out)] == [0, 3000], "the timeline continues from what was sent"


def test_pes_missing_counts_what_a_declared_length_still_needs():
    one = pes(AUDIO, 0, size=100, bounded=True)
    assert len(one) == 1 and pes_missing(one[0]) <= 0
    assert pes_missing(pes(VIDEO, 0, size=600, bounded=True)[0]) > 0
    assert pes_missing(pes(VIDEO, 0, size=600)[0]) is None
