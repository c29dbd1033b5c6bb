from onair.agent.ingest import whip
from onair.agent.webrtc.signalling import offer_codecs
from onair.api import refusals

OFFER = """v=0
o=- 1 1 IN IP4 0.0.0.0
s=-
t=0 0
m=audio 9 UDP/TLS/RTP/SAVPF 111 0
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=rtpmap:102 H264/90000
"""


def test_offer_with_h264_and_opus_is_fine_even_among_other_codecs():
    assert offer_codecs(OFFER) == {"audio": {"opus", "pcmu"}, "video": {"vp8", "rtx", "h264"}}
    assert whip.offer_problem(OFFER) is None


def test_missing_h264_or_opus_or_a_track_is_406_with_the_reference_message_and_a_reason():
    audio_only = OFFER.split("m=video")[0]
    video_only = "m=video" + OFFER.split("m=video")[1]
    video_only = OFFER.split("m=audio")[0] + video_only
    for offer, reason in (
        (OFFER.replace("H264", "AV1"), refusals.UNSUPPORTED_CODEC),
        (OFFER.replace("opus", "G722"), refusals.UNSUPPORTED_CODEC),
        (audio_only, refusals.NO_VIDEO),
        (video_only, refusals.NO_AUDIO),
    ):
        status, why, message = whip.offer_problem(offer)
        assert (status, why) == (406, reason)
        assert message.startswith("WebRTC requires H.264 video and OPUS audio. Both tracks must be present")


def test_non_sdp_is_400():
    assert whip.offer_problem("hello")[:2] == (400, refusals.BAD_REQUEST)


def test_bearer_token():
    assert whip.bearer_ok("Bearer s3cret", "s3cret")
    assert whip.bearer_ok("bearer  s3cret ", "s3cret")
    assert not whip.bearer_ok("Bearer s3cre", "s3cret")
    assert not whip.bearer_ok("Basic s3cret", "s3cret")
    assert not whip.bearer_ok(None, "s3cret")
    assert not whip.bearer_ok("Bearer ", None)


def test_remux_reads_the_inherited_pipe():
    argv = whip.remux_argv(14, "rtmp://127.0.0.1:1/live/x", binary="ffmpeg")
    assert argv[argv.index("-i") + 1] == "pipe:14" and argv[-1] == "rtmp://127.0.0.1:1/live/x"
