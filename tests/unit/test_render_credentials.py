import base64

import pytest
from pydantic import ValidationError

from onair.api.livestream import IngestEndpoints
from onair.render.credentials import (
    CREDENTIAL_KEYS,
    Credentials,
    credentials_from_secret_data,
    generate_credentials,
    render_credentials_secret,
)

FIXED = Credentials(
    stream_key="key-0123456789",
    srt_passphrase="pass phrase/&=1",
    whip_token="whiptoken123",
    playback_secret="p" * 32,
    upload_token="u" * 32,
    read_token="r" * 32,
    agent_token="a" * 32,
)


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def secret_data(creds: Credentials) -> dict[str, str]:
    return {k: b64(v) for k, v in creds.data().items()}


def test_generated_credentials_are_valid_and_distinct():
    a, b = generate_credentials(), generate_credentials()
    assert a != b
    assert 10 <= len(a.srt_passphrase) <= 79
    assert (
        len(
            {
                a.stream_key,
                a.srt_passphrase,
                a.whip_token,
                a.playback_secret,
                a.upload_token,
                a.read_token,
                a.agent_token,
            }
        )
        == 7
    )
    assert len(a.agent_token) >= 32
    # The read token travels in an RTMP play URL's query: nothing in it may need escaping.
    assert a.read_token.isalnum() and len(a.read_token) >= 32


def test_srt_passphrase_follows_libsrt_length_rule():
    for bad in ("x" * 9, "x" * 80):
        with pytest.raises(ValidationError):
            Credentials(**{**FIXED.model_dump(), "srt_passphrase": bad})
    Credentials(**{**FIXED.model_dump(), "srt_passphrase": "x" * 79})


def test_repr_never_shows_a_key():
    assert FIXED.stream_key not in repr(FIXED) and FIXED.stream_key not in str(FIXED)
    assert FIXED.stream_key not in f"{FIXED!r} {FIXED}"


def test_round_trip_through_secret_data_keeps_every_value():
    assert credentials_from_secret_data(secret_data(FIXED)) == FIXED


def test_no_secret_or_no_credential_keys_means_generate():
    assert credentials_from_secret_data(None) is None
    assert credentials_from_secret_data({}) is None
    assert credentials_from_secret_data({"rtmpPublishUrl": b64("rtmp://x/live/k")}) is None


def test_missing_and_unusable_values_are_filled_without_rotating_the_others():
    data = secret_data(FIXED)
    del data["uploadToken"]
    data["srtPassphrase"] = b64("short")  # a user shortened it below libsrt's minimum
    data["whipToken"] = "%%% not base64"
    fill = Credentials(
        stream_key="other-stream-key",
        srt_passphrase="fresh-passphrase",
        whip_token="fresh-whip-token",
        playback_secret="f" * 32,
        upload_token="g" * 32,
        read_token="h" * 32,
        agent_token="i" * 32,
    )
    got = credentials_from_secret_data(data, fill=lambda: fill)
    assert got.stream_key == FIXED.stream_key and got.playback_secret == FIXED.playback_secret
    assert got.upload_token == fill.upload_token
    assert got.srt_passphrase == fill.srt_passphrase and got.whip_token == fill.whip_token


def test_a_secret_from_before_the_read_token_gains_one_and_keeps_everything_else():
    data = secret_data(FIXED)
    del data["readToken"]
    got = credentials_from_secret_data(data)
    assert got.read_token and got.read_token != FIXED.read_token
    assert {k: v for k, v in got.data().items() if k != "readToken"} == {
        k: v for k, v in FIXED.data().items() if k != "readToken"
    }
    # Once stored, it is preserved like every other key.
    assert credentials_from_secret_data(secret_data(got)) == got


def test_a_read_token_that_cannot_travel_in_a_url_is_replaced():
    data = secret_data(FIXED)
    data["readToken"] = b64("has spaces & ampersands " * 2)
    assert credentials_from_secret_data(data).read_token != "has spaces & ampersands " * 2


def test_a_user_rotated_key_is_kept():
    data = secret_data(FIXED)
    data["streamKey"] = b64("my-own-rotated-key")
    assert credentials_from_secret_data(data).stream_key == "my-own-rotated-key"


URLS = IngestEndpoints(
    rtmp="rtmp://ls-ingest.ns.svc:1935/live",
    srt="srt://ls-ingest.ns.svc:9998?streamid=publish",
    whip="http://ls-ingest.ns.svc:8443/whip",
    backup_rtmp="rtmp://ls-ingest-backup.ns.svc:1935/live",
)


def decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_secret_manifest_has_credentials_and_publish_urls():
    owner = [
        {
            "apiVersion": "onair.dev/v1alpha1",
            "kind": "Livestream",
            "name": "ls",
            "uid": "u1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    secret = render_credentials_secret(
        {"name": "ls", "namespace": "ns", "uid": "u1"}, FIXED, URLS, labels={"a": "b"}, owner_references=owner
    )
    assert secret["kind"] == "Secret" and secret["type"] == "Opaque" and "stringData" not in secret
    assert secret["metadata"] == {
        "name": "ls-credentials",
        "namespace": "ns",
        "labels": {"a": "b"},
        "ownerReferences": owner,
    }
    data = decoded(secret)
    assert {k: data[k] for k in CREDENTIAL_KEYS} == FIXED.data()
    assert data["rtmpPublishUrl"] == "rtmp://ls-ingest.ns.svc:1935/live/key-0123456789"
    assert data["backupRtmpPublishUrl"] == "rtmp://ls-ingest-backup.ns.svc:1935/live/key-0123456789"
    # The passphrase is URL-quoted: it may hold characters a user chose.
    assert data["srtPublishUrl"] == "srt://ls-ingest.ns.svc:9998?streamid=publish&passphrase=pass%20phrase%2F%26%3D1"
    assert data["whipUrl"] == URLS.whip
    assert "rtmpsPublishUrl" not in data and "backupSrtPublishUrl" not in data
    assert list(secret["data"]) == sorted(secret["data"])
    # Reading the rendered Secret back gives the same credentials: regeneration never happens.
    assert credentials_from_secret_data(secret["data"]) == FIXED


def test_standalone_secret_matches_the_one_render_children_makes():
    from onair.api.meta import child_selector

    secret = render_credentials_secret({"name": "ls", "namespace": "ns", "uid": "u1"}, FIXED, URLS)
    assert set(child_selector("ls").items()) <= set(secret["metadata"]["labels"].items())
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert (
        "ownerReferences" not in render_credentials_secret({"name": "ls", "namespace": "ns"}, FIXED, URLS)["metadata"]
    )


def test_a_secret_from_before_the_agent_token_gains_one_and_keeps_everything_else():
    """Upgrading the operator adds agentToken to existing Secrets; every key handed out stays."""
    data = secret_data(FIXED)
    del data["agentToken"]
    got = credentials_from_secret_data(data)
    assert got.agent_token and got.agent_token != FIXED.agent_token
    assert {k: v for k, v in got.data().items() if k != "agentToken"} == {
        k: v for k, v in FIXED.data().items() if k != "agentToken"
    }


def test_an_agent_token_that_cannot_travel_in_a_header_is_replaced():
    data = secret_data(FIXED)
    data["agentToken"] = b64("has a space but long enough")
    got = credentials_from_secret_data(data, fill=generate_credentials)
    assert " " not in got.agent_token and got.read_token == FIXED.read_token
