from onair.agent.ingest import srt


def test_passphrase_rules_follow_libsrt():
    assert "no SRT passphrase" in srt.passphrase_problem(None)
    assert "9 characters" in srt.passphrase_problem("x" * 9)
    assert srt.passphrase_problem("x" * 10) is None and srt.passphrase_problem("x" * 79) is None
    assert srt.passphrase_problem("x" * 80)


def test_listener_uri_quotes_the_passphrase_and_binds_all_for_wildcard():
    uri = srt.listener_uri("0.0.0.0", 9998, "a&b c=d", 2000)
    assert uri == "srt://:9998?mode=listener&passphrase=a%26b%20c%3Dd&latency=2000&transtype=live"


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
    rej = srt.parse_srt_line("10:56:44.093382/SRT:RcvQ:w1!W:SRT.cn: processConnectRequest: rsp(REJECT): 1010 - "
                             "Incorrect passphrase")
    assert (rej.kind, rej.detail) == ("rejected", "Incorrect passphrase")
    assert srt.parse_srt_line("SrtCommon: ... done.") is None
