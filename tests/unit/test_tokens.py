import base64
import json
from datetime import datetime, timezone

import pytest

from onair import tokens
from onair.tokens import TokenError

SECRET = "s3cret-playback-of-the-livestream-in-test"
STREAM = "media/launch-party"
NOW = 1_700_000_000


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_round_trip_with_user_id():
    token = tokens.mint(SECRET, STREAM, NOW + 60, user_id="alice")
    claims = tokens.verify(SECRET, token, STREAM, now=NOW)
    assert claims == tokens.PlaybackClaims(livestream=STREAM, expires_at=NOW + 60, user_id="alice")


def test_user_id_is_optional_and_datetimes_are_accepted():
    expiry = datetime.fromtimestamp(NOW + 60, timezone.utc)
    token = tokens.mint(SECRET, STREAM, expiry)
    claims = tokens.verify(SECRET, token, STREAM, now=datetime.fromtimestamp(NOW, timezone.utc))
    assert claims.user_id is None and claims.expires_at == NOW + 60


def test_token_is_url_safe():
    token = tokens.mint(SECRET, STREAM, NOW + 60, user_id="ü/+ =&?")
    assert all(c.isalnum() or c in "-_." for c in token)


def test_wrong_secret_is_refused():
    token = tokens.mint("another-secret-of-another-livestream", STREAM, NOW + 60)
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(SECRET, token, STREAM, now=NOW)


def test_altered_payload_is_refused():
    token = tokens.mint(SECRET, STREAM, NOW + 60)
    header, _, signature = token.split(".")
    forged = _b64({"aud": STREAM, "exp": NOW + 10_000_000})
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(SECRET, f"{header}.{forged}.{signature}", STREAM, now=NOW)


def test_expired_token_is_refused_and_leeway_applies():
    token = tokens.mint(SECRET, STREAM, NOW)
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(SECRET, token, STREAM, now=NOW)
    assert tokens.verify(SECRET, token, STREAM, now=NOW + 5, leeway_seconds=10)


def test_token_for_another_livestream_is_refused():
    token = tokens.mint(SECRET, "media/other", NOW + 60)
    with pytest.raises(TokenError, match="another livestream"):
        tokens.verify(SECRET, token, STREAM, now=NOW)


def test_audience_may_be_a_list():
    header = _b64({"alg": "HS256", "typ": "JWT"})
    payload = _b64({"aud": ["media/other", STREAM], "exp": NOW + 60})
    token = f"{header}.{payload}.{tokens.signature(SECRET, f'{header}.{payload}')}"
    assert tokens.verify(SECRET, token, STREAM, now=NOW).livestream == STREAM


def test_alg_none_is_refused_even_without_signature():
    header = _b64({"alg": "none", "typ": "JWT"})
    payload = _b64({"aud": STREAM, "exp": NOW + 60})
    with pytest.raises(TokenError, match="algorithm"):
        tokens.verify(SECRET, f"{header}.{payload}.", STREAM, now=NOW)


def test_missing_expiry_is_refused():
    header = _b64({"alg": "HS256", "typ": "JWT"})
    payload = _b64({"aud": STREAM})
    token = f"{header}.{payload}.{tokens.signature(SECRET, f'{header}.{payload}')}"
    with pytest.raises(TokenError, match="expiry"):
        tokens.verify(SECRET, token, STREAM, now=NOW)


def test_not_before_is_honoured():
    header = _b64({"alg": "HS256", "typ": "JWT"})
    payload = _b64({"aud": STREAM, "exp": NOW + 60, "nbf": NOW + 30})
    token = f"{header}.{payload}.{tokens.signature(SECRET, f'{header}.{payload}')}"
    with pytest.raises(TokenError, match="not valid yet"):
        tokens.verify(SECRET, token, STREAM, now=NOW)
    assert tokens.verify(SECRET, token, STREAM, now=NOW + 31)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c.d", "!!!.###.$$$", "é.é.é", "x" * 5000])
def test_garbage_is_a_token_error_not_a_crash(garbage):
    with pytest.raises(TokenError):
        tokens.verify(SECRET, garbage, STREAM, now=NOW)


def test_empty_secret_is_a_configuration_error():
    with pytest.raises(ValueError):
        tokens.mint("", STREAM, NOW + 60)


# jwt.io's example is signed with a 19-byte key, shorter than RFC 7518 asks for; PyJWT warns.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_signature_is_standard_hs256_jwt():
    # The jwt.io example token: a standard library's signature must verify here, so the only
    # complaint left is about the claims it lacks.
    example = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    with pytest.raises(TokenError, match="another livestream"):
        tokens.verify("your-256-bit-secret", example, STREAM, now=NOW)
    with pytest.raises(TokenError, match="signature"):
        tokens.verify("not-the-secret-that-signed-the-example", example, STREAM, now=NOW)


def _signed(payload: str, header: str | None = None) -> str:
    """A correctly signed token around a raw JSON payload (NaN and Infinity are not valid JSON
    for json.dumps, but Python's parser reads them)."""
    head = header or _b64({"alg": "HS256", "typ": "JWT"})
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{tokens.signature(SECRET, f'{head}.{body}')}"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_time_claims_are_refused(claim, value):
    claims = {"aud": STREAM, "exp": NOW + 60}
    raw = (
        json.dumps(claims)[:-1] + f', "{claim}": {value}}}'
        if claim != "exp"
        else json.dumps({"aud": STREAM})[:-1] + f', "exp": {value}}}'
    )
    with pytest.raises(TokenError, match=f"{claim} is not a finite number"):
        tokens.verify(SECRET, _signed(raw), STREAM, now=NOW)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_time_claims_must_be_numbers(claim):
    with pytest.raises(TokenError, match=f"{claim} is not a number"):
        tokens.verify(SECRET, _signed(json.dumps({"aud": STREAM, "exp": NOW + 60, claim: "soon"})), STREAM, now=NOW)


def test_validity_is_capped():
    longest = int(tokens.MAX_LIFETIME.total_seconds())
    assert tokens.verify(SECRET, _signed(json.dumps({"aud": STREAM, "exp": NOW + longest})), STREAM, now=NOW)
    for exp in (NOW + longest + 1, 1e308, 10**30):
        with pytest.raises(TokenError, match="30-day maximum"):
            tokens.verify(SECRET, _signed(json.dumps({"aud": STREAM, "exp": exp})), STREAM, now=NOW)
    # Minted long ago for a long time: still within 30 days of now, but not of its own iat.
    old = json.dumps({"aud": STREAM, "iat": NOW - longest, "exp": NOW + 3600})
    with pytest.raises(TokenError, match="30-day maximum"):
        tokens.verify(SECRET, _signed(old), STREAM, now=NOW)


def test_minting_refuses_a_longer_validity():
    longest = tokens.MAX_LIFETIME.total_seconds()
    assert tokens.mint(SECRET, STREAM, NOW + longest, issued_at=NOW)
    with pytest.raises(ValueError, match="at most 30 days"):
        tokens.mint(SECRET, STREAM, NOW + longest + 1, issued_at=NOW)
    with pytest.raises(ValueError, match="at most 30 days"):
        tokens.mint(SECRET, STREAM, datetime.now(timezone.utc).timestamp() + 31 * 86400)


@pytest.mark.parametrize("part", ["header", "payload"])
def test_deeply_nested_json_is_a_token_error_not_a_crash(part):
    nested = "[" * 1500 + "]" * 1500  # fits in a 4 kB token, deeper than the JSON parser's recursion
    if part == "header":
        token = f"{base64.urlsafe_b64encode(nested.encode()).rstrip(b'=').decode()}.e30.x"
    else:
        token = _signed(nested)
    with pytest.raises(TokenError, match=f"malformed token {part}"):
        tokens.verify(SECRET, token, STREAM, now=NOW)
