from onair.agent.supervisor import shown_argv


def test_a_logged_command_line_hides_secrets_and_stays_on_one_line():
    argv = ["ffmpeg", "-headers", "Authorization: Bearer r3ad\r\n", "-i", "rtmp://i/live/stream?token=r3ad"]
    shown = shown_argv(argv, ["r3ad"])
    assert "r3ad" not in shown
    assert "\r" not in shown and "\n" not in shown
    assert shown == "ffmpeg -headers Authorization: Bearer ***\\r\\n -i rtmp://i/live/stream?token=***"
