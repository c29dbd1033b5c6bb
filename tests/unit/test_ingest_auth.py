from multidict import MultiDict

from onair.agent.ingest import auth

KEY = "sk_live/abc+def"
TOKEN = "internal-token"


def req(name, addr="203.0.113.7", tcurl="rtmp://ingest.example/live", clientid="1"):
    return auth.PublishRequest(name=name, addr=addr, clientid=clientid, tcurl=tcurl, app="live")


def decide(request, **kw):
    args = dict(
        stream_key=KEY,
        bridge_token=TOKEN,
        protocols=["rtmp", "rtmps", "srt", "whip"],
        active=True,
        holder=None,
        rtmps_addr="127.0.0.2",
    )
    args.update(kw)
    return auth.decide(request, **args)


def test_right_key_is_accepted_verbatim_or_percent_encoded():
    assert decide(req(KEY)).accept
    assert decide(req("sk_live%2Fabc%2Bdef")).reason == auth.ACCEPTED


def test_wrong_key_is_refused_without_echoing_it():
    d = decide(req("sk_live/abc+deX"))
    assert not d.accept and d.reason == auth.WRONG_KEY
    assert "deX" not in d.message and KEY not in d.message and "203.0.113.7" in d.message


def test_no_configured_key_refuses_everything_even_an_empty_name():
    assert decide(req(""), stream_key=None).reason == auth.NO_KEY
    assert decide(req(""), stream_key="").reason == auth.NO_KEY


def test_protocol_comes_from_the_tls_proxy_address_not_the_client():
    assert decide(req(KEY, addr="127.0.0.2")).protocol == "rtmps"
    assert decide(req(KEY, addr="127.0.0.1", tcurl="rtmps://x/live")).protocol == "rtmp"


def test_without_a_proxy_address_tcurl_tells_rtmps():
    assert decide(req(KEY, tcurl="RTMPS://x:443/live"), rtmps_addr=None).protocol == "rtmps"
    assert decide(req(KEY), rtmps_addr=None).protocol == "rtmp"


def test_bridge_names_need_the_token_and_a_loopback_peer():
    srt_name = auth.BRIDGE_PREFIX["srt"] + TOKEN
    assert decide(req(srt_name, addr="127.0.0.1")).protocol == "srt"
    assert decide(req(srt_name, addr="127.0.0.1")).accept
    assert decide(req(srt_name, addr="198.51.100.1")).reason == auth.WRONG_KEY
    assert decide(req(auth.BRIDGE_PREFIX["whip"] + "guess", addr="127.0.0.1")).reason == auth.WRONG_KEY


def test_disabled_protocol_inactive_and_busy_slots_refuse():
    assert decide(req(KEY), protocols=["srt"]).reason == auth.PROTOCOL_DISABLED
    assert decide(req(KEY), active=False).reason == auth.INACTIVE
    assert decide(req(KEY), holder=auth.Claim("rtmp", "7")).reason == auth.BUSY
    d = decide(req(KEY), holder=auth.Claim("srt"))
    assert d.reason == auth.OTHER_PROTOCOL and "srt is already live" in d.message


def test_credentials_are_checked_before_anything_is_revealed():
    # A stranger learns nothing about what is live or whether the slot is active.
    assert decide(req("guess"), active=False, holder=auth.Claim("srt")).reason == auth.WRONG_KEY


def test_publisher_args_cannot_override_nginx_fields():
    form = MultiDict(
        [
            ("app", "live"),
            ("addr", "198.51.100.9"),
            ("clientid", "4"),
            ("call", "publish"),
            ("name", "k"),
            ("type", "live"),
            ("addr", "127.0.0.2"),
            ("name", "other"),
        ]
    )
    r = auth.PublishRequest.from_form(form)
    assert (r.addr, r.name, r.clientid) == ("198.51.100.9", "k", "4")


READ = "r3adT0ken"


def play(name="stream", token=READ, checked=True, read_token=READ):
    req = auth.PlayRequest(name=name, addr="198.51.100.9", clientid="7", token=token)
    return auth.decide_play(req, internal_stream="stream", checked=checked, read_token=read_token)


def test_a_play_needs_the_read_token():
    assert play().accept and play().reason == auth.PLAY_ACCEPTED
    assert (play(token="").accept, play(token="").reason) == (False, auth.PLAY_NO_TOKEN)
    wrong = play(token=READ + "x")
    assert (wrong.accept, wrong.reason) == (False, auth.PLAY_WRONG_TOKEN)
    assert READ not in wrong.message and READ + "x" not in wrong.message
    assert "198.51.100.9" in wrong.message


def test_a_configured_but_missing_token_refuses_every_play():
    missing = play(read_token=None)
    assert (missing.accept, missing.reason) == (False, auth.PLAY_NO_TOKEN_CONFIGURED)


def test_unchecked_plays_are_allowed_only_for_the_internal_stream():
    assert play(token="", checked=False, read_token=None).accept
    for checked in (True, False):
        other = play(name="sk_guessed_key", checked=checked)
        assert (other.accept, other.reason) == (False, auth.PLAY_UNKNOWN_STREAM)
        assert "sk_guessed_key" not in other.message


def test_play_form_fields_trust_nginx_first():
    # nginx-rtmp posts its own fields first and the player's query args after them.
    form = MultiDict(
        [
            ("call", "play"),
            ("addr", "10.0.0.5"),
            ("clientid", "3"),
            ("name", "stream"),
            ("token", "t1"),
            ("name", "forged"),
            ("addr", "127.0.0.1"),
        ]
    )
    req = auth.PlayRequest.from_form(form)
    assert (req.name, req.addr, req.clientid, req.token) == ("stream", "10.0.0.5", "3", "t1")


def test_an_ended_livestream_refuses_with_its_own_reason():
    d = decide(req(KEY), active=False, ended=True)
    assert (d.accept, d.reason, d.detail) == (False, auth.ENDED, "the livestream has ended")
    assert d.message == "refused rtmp publish from 203.0.113.7: the livestream has ended"


def test_a_bridge_refusal_names_the_real_caller_and_a_guessed_bridge_name_is_an_rtmp_key_guess():
    srt_name = auth.BRIDGE_PREFIX["srt"] + TOKEN
    d = decide(req(srt_name, addr="127.0.0.1"), active=False, addr="198.51.100.4")
    assert (d.protocol, d.reason) == ("srt", auth.INACTIVE)
    assert d.message == "refused srt publish from 198.51.100.4: the livestream is not active"
    guess = decide(req(auth.BRIDGE_PREFIX["srt"] + "guess", addr="198.51.100.1"))
    assert (guess.protocol, guess.reason, guess.detail) == ("rtmp", auth.WRONG_KEY, "wrong stream key")
