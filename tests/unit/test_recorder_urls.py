from onair.agent.recorder.source_access import display_url, is_http, url_secrets


def test_logs_never_show_a_token_or_password():
    url = "https://user:s3cret@origin.ns.svc:8081/hls/cmaf/master.m3u8?token=eyJhbGciOi.x.y"
    shown = display_url(url)
    assert shown == "https://origin.ns.svc:8081/hls/cmaf/master.m3u8"
    assert set(url_secrets(url)) == {"token=eyJhbGciOi.x.y", "s3cret"}


def test_plain_urls_have_no_secrets():
    assert url_secrets("rtmp://ingest:1935/live/stream") == []
    assert display_url("rtmp://ingest:1935/live/stream") == "rtmp://ingest:1935/live/stream"


def test_http_means_hls():
    assert is_http("http://o/m.m3u8") and is_http("https://o/m.m3u8")
    assert not is_http("rtmp://i/live/stream") and not is_http("srt://i:9998")
