from onair.agent.ingest.rtmpstat import ReceiveMonitor, StreamStat, parse_stat, track_problem, usable
from onair.api import refusals

# Captured from nginx 1.22.1 / nginx-rtmp 1.1.4 (Debian libnginx-mod-rtmp) with one ffmpeg publisher.
STAT = """<?xml version="1.0" encoding="utf-8" ?>
<rtmp><nginx_version>1.22.1</nginx_version><server><application><name>live</name><live>
<stream><name>stream</name><time>2256</time><bw_in>0</bw_in><bytes_in>238712</bytes_in>
<client><id>9</id><address>127.0.0.1</address><time>1000</time><flashver>LNX 9,0,124,2</flashver><dropped>0</dropped></client>
<client><id>1</id><address>127.0.0.1</address><time>2433</time><flashver>FMLE/3.0</flashver><publishing/><active/></client>
<meta><video><width>320</width><height>240</height><frame_rate>30</frame_rate><codec>H264</codec><profile>Baseline</profile>
<level>1.3</level></video><audio><codec>AAC</codec><profile>LC</profile><channels>1</channels><sample_rate>44100</sample_rate></audio></meta>
<nclients>2</nclients><publishing/><active/></stream>
<stream><name>other</name><time>1</time><bytes_in>5</bytes_in><nclients>0</nclients></stream>
</live></application></server></rtmp>"""


def test_parse_stat_reads_publisher_and_media():
    st = parse_stat(STAT)
    assert st.publishing and st.client_id == "1" and st.client_addr == "127.0.0.1"
    assert st.bytes_in == 238712 and st.readers == 1
    assert (st.video.codec, st.video.width, st.video.height, st.video.fps) == ("h264", 320, 240, 30.0)
    assert (st.audio.codec, st.audio.channels, st.audio.sample_rate) == ("aac", 1, 44100)


def test_parse_stat_audio_only_and_missing_stream():
    audio_only = STAT.replace(
        "<video><width>320</width><height>240</height><frame_rate>30</frame_rate>"
        "<codec>H264</codec><profile>Baseline</profile>\n<level>1.3</level></video>",
        "",
    )
    assert parse_stat(audio_only).video is None and parse_stat(audio_only).audio.codec == "aac"
    assert parse_stat(STAT, stream="nope") is None
    assert parse_stat("<rtmp><server/></rtmp>") is None


def stat(bytes_in, client="1", publishing=True):
    return StreamStat(publishing, client, "127.0.0.1", bytes_in, 0, None, None, 0)


def test_receiving_needs_growing_bytes_and_ends_after_a_stall():
    m = ReceiveMonitor(stall_seconds=2.0, rate_window_seconds=3.0)
    m.update(0.0, stat(0))
    assert not m.receiving
    m.update(0.5, stat(1000))
    assert m.receiving
    m.update(1.5, stat(126000))
    assert m.bitrate_kbps == 126000 * 8 / 1000 / 1.5
    m.update(3.0, stat(126000))
    assert m.receiving  # 1.5 s without growth: still within the window
    m.update(3.6, stat(126000))
    assert not m.receiving and m.stalled_for == 2.1


def test_new_publisher_or_no_publisher_resets():
    m = ReceiveMonitor()
    m.update(0.0, stat(5000))
    m.update(1.0, stat(9000))
    m.update(1.5, stat(100, client="2"))
    assert m.receiving and m.bitrate_kbps is None  # one sample of the new publisher only
    m.update(2.0, None)
    assert not m.receiving and m.stalled_for is None
    m.update(2.5, stat(10, publishing=False))
    assert not m.receiving


def test_only_h264_video_with_aac_or_mp3_audio_is_usable():
    st = parse_stat(STAT)
    assert usable(st) and track_problem(st) is None
    assert usable(parse_stat(STAT.replace("<codec>AAC</codec>", "<codec>MP3</codec>")))
    no_audio = parse_stat(STAT.replace("<audio><codec>AAC</codec>", "<audio><codec></codec>"))
    assert no_audio.audio is None and usable(no_audio)  # video without audio goes on air
    sorenson = parse_stat(STAT.replace("<codec>H264</codec>", "<codec>Sorenson-H263</codec>"))
    assert not usable(sorenson)
    reason, words = track_problem(sorenson)
    assert reason == refusals.UNSUPPORTED_CODEC and words.startswith("video codec sorenson-h263 ")
    speex = parse_stat(STAT.replace("<codec>AAC</codec>", "<codec>Speex</codec>"))
    assert track_problem(speex)[1].startswith("audio codec speex ") and not usable(speex)
    audio_only = parse_stat(STAT.replace("<codec>H264</codec>", "<codec></codec>"))
    assert track_problem(audio_only) is None and not usable(audio_only)  # judged after a grace period
    assert not usable(None) and track_problem(None) is None
