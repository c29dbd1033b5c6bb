from onair import endpoints
from onair.agent.ingest import srt


def test_passphrase_rules_follow_libsrt():
    assert "no SRT passphrase" in srt.passphrase_problem(None)
    assert "9 characters" in srt.passphrase_problem("x" * 9)
    assert srt.passphrase_problem("x" * 10) is None and srt.passphrase_problem("x" * 79) is None
    assert srt.passphrase_problem("x" * 80)


def test_listener_has_no_secret_on_its_command_line():
    argv = srt.listener_argv("0.0.0.0", 9998, 2000, 5000, "http://127.0.0.1:8080/internal/srt/caller", python="py")
    assert argv == [
        "py",
        "-m",
        "onair.agent.ingest.srtlisten",
        "--host",
        "0.0.0.0",
        "--port",
        "9998",
        "--latency-ms",
        "2000",
        "--forward",
        "5000",
        "--ask",
        "http://127.0.0.1:8080/internal/srt/caller",
    ]


def test_personal_streamid_carries_the_claims_and_the_passphrase_is_the_signature():
    assert srt.personal_claims("publish:aGVhZA.cGF5") == "aGVhZA.cGF5"
    for shared in ("", "publish", "publish:", "publish:a.b.c", "publish:a.", "#!::r=live", "play:a.b"):
        assert srt.personal_claims(shared) is None, shared
    url = endpoints.personal_srt_url("srt://ingest.example:9998?streamid=publish&latency=2000000", "aGVhZA.cGF5.c2ln")
    assert url == "srt://ingest.example:9998?streamid=publish:aGVhZA.cGF5&passphrase=c2ln&latency=2000000"


def test_bridge_reads_the_udp_hop_and_copies_into_flv():
    argv = srt.bridge_argv(5000, "rtmp://127.0.0.1:1935/live/x", binary="ffmpeg")
    assert argv[argv.index("-i") + 1].startswith("udp://127.0.0.1:5000?")
    assert argv[-3:] == ["-flvflags", "no_duration_filesize", "rtmp://127.0.0.1:1935/live/x"]
    assert "copy" in argv


def test_srt_live_transmit_lines():
    assert srt.parse_srt_line("Accepted SRT source connection").kind == "connected"
    assert srt.parse_srt_line("SRT source disconnected").kind == "disconnected"
    assert srt.parse_srt_line(" listen...").kind == "listening"
    peer = srt.parse_srt_line("10:56:44.091771/SRT:RcvQ:w1.N:SRT.cn: PASSING request from: 127.0.0.1:39721 to agent:5")
    assert (peer.kind, peer.detail) == ("peer", "127.0.0.1:39721")
    rej = srt.parse_srt_line(
        "10:56:44.093382/SRT:RcvQ:w1!W:SRT.cn: processConnectRequest: rsp(REJECT): 1010 - Incorrect passphrase"
    )
    assert (rej.kind, rej.detail) == ("rejected", "Incorrect passphrase")
    # The listener's own rejections (2000 + the code the agent chose) were recorded by the agent.
    assert srt.parse_srt_line("processConnectRequest: rsp(REJECT): 2403 - Application-defined rejection reason") is None
    assert srt.parse_srt_line("SrtCommon: ... done.") is None


def test_bridge_converts_only_what_flv_cannot_carry():
    assert srt.conversions("h264", "aac") == (False, False)
    assert srt.conversions("h264", "mp3") == (False, False)
    assert srt.conversions("hevc", "aac") == (True, False)
    assert srt.conversions("h264", "mp2") == (False, True)
    assert srt.conversions("mpeg2video", "ac3") == (True, True)
    assert srt.conversions(None, "aac") == (False, False)
    copy = srt.bridge_argv(5000, "rtmp://x/live/y", binary="ffmpeg")
    assert copy[copy.index("-c:v") + 1] == "copy" and copy[copy.index("-c:a") + 1] == "copy"
    both = srt.bridge_argv(5000, "rtmp://x/live/y", binary="ffmpeg", convert_video=True, convert_audio=True)
    assert both[both.index("-c:v") + 1] == "libx264" and both[both.index("-c:a") + 1] == "aac"
    assert both[both.index("-pix_fmt") + 1] == "yuv420p"  # HEVC Main10 must not become High10 H.264
    assert both[both.index("-force_key_frames") + 1] == "source"
    assert both[-1] == "rtmp://x/live/y"


# ffmpeg 5.1's own words, at -loglevel info.
HEVC_MP2_DUMP = """Input #0, mpegts, from 'udp://127.0.0.1:5000?fifo_size=1000000':
  Duration: N/A, start: 1.400000, bitrate: N/A
  Program 1 
    Metadata:
      service_name    : Service01
  Stream #0:0[0x100]: Video: hevc (Main) (HEVC / 0x43564548), yuv420p(tv), 320x240, 25 fps, 25 tbr, 90k tbn
  Stream #0:1[0x101]: Audio: mp2 ([3][0][0][0] / 0x0003), 48000 Hz, stereo, fltp, 384 kb/s
  Stream #0:2[0x102]: Audio: aac (LC) ([15][0][0][0] / 0x000F), 48000 Hz, stereo, fltp
[flv @ 0x5595b2ae0500] Video codec hevc not compatible with flv
Could not write header for output file #0 (incorrect codec parameters ?): Function not implemented"""


def test_bridge_log_reports_the_input_codecs_once_the_dump_ends():
    bridge = srt.BridgeLog()
    events = [e for e in (bridge.feed(line) for line in HEVC_MP2_DUMP.splitlines()) if e]
    assert events == [srt.BridgeEvent("input", "hevc", "mp2")]  # the first audio track is the mapped one


def test_bridge_log_audio_only_input_and_a_missing_decoder():
    bridge = srt.BridgeLog()
    lines = [
        "Input #0, mpegts, from 'udp://x':",
        "  Stream #0:0[0x100]: Audio: aac (LC), 48000 Hz",
        "Output #0, flv, to 'rtmp://x':",
    ]
    assert [e for e in map(bridge.feed, lines) if e] == [srt.BridgeEvent("input", None, "aac")]
    missing = bridge.feed("Decoder (codec vvc) not found for input stream #0:0")
    assert missing == srt.BridgeEvent("undecodable", detail="vvc")
    bridge.reset()
    assert bridge.feed("  Stream #0:0[0x100]: Video: h264") is None  # outside an input dump


def test_listener_reads_and_writes_socket_addresses_as_srt_prints_them():
    import ctypes

    from onair.agent.ingest import srtlisten

    for host, printed in (("127.0.0.1", "127.0.0.1:9998"), ("::1", "[::1]:9998"), ("0.0.0.0", "0.0.0.0:9998")):
        buffer, _ = srtlisten.sockaddr(host, 9998)
        assert srtlisten.peer_address(ctypes.addressof(buffer)) == printed
    assert srtlisten.peer_address(None) == "unknown"


def test_listener_finds_libsrt_here():
    from onair.agent.ingest import srtlisten

    assert srtlisten.load_library().srt_listen_callback
