from onair import endpoints


def test_read_urls_carry_the_token_only_when_given():
    assert endpoints.ingest_read_url("ingest", 1935) == "rtmp://ingest:1935/live/stream"
    assert endpoints.ingest_read_url("ingest", 1935, token="abc") == "rtmp://ingest:1935/live/stream?token=abc"
    assert endpoints.with_read_token("rtmp://i/live/stream", None) == "rtmp://i/live/stream"
    assert endpoints.with_read_token("rtmp://i/live/stream?x=1", "a/b&c") == "rtmp://i/live/stream?x=1&token=a%2Fb%26c"
