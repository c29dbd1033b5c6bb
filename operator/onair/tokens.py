"""Playback tokens: who may watch a Livestream while it is in backstage.

A token is a standard JWT signed with HS256 using the Livestream's own playback secret, so the
control plane mints them here and anyone else can mint them with any JWT library:

* ``aud``: the Livestream, ``namespace/name`` (a token for one stream never opens another)
* ``exp``: expiry, Unix seconds (required: a leaked token must stop working by itself)
* ``sub``: optional user id, for logs and for the embedding application
* ``iat``/``nbf``: optional, honoured when present

Only HS256 is accepted whatever the header says, so a forged ``alg: none`` or a public-key
algorithm can never be used to skip the signature. Pure functions; the clock is a parameter.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Optional, Union

ALGORITHM = "HS256"
_HEADER = {"alg": ALGORITHM, "typ": "JWT"}
# Tokens travel in query strings; anything longer than this is not one of ours.
MAX_TOKEN_LENGTH = 4096

Timestamp = Union[int, float, datetime]


class TokenError(ValueError):
    """Why a token was refused; the message is safe to show to the viewer."""


@dataclass(frozen=True)
class PlaybackClaims:
    livestream: str
    expires_at: int
    user_id: Optional[str] = None


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed token: not base64url") from exc


def _seconds(value: Timestamp) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the playback secret is empty")
    return key


def _sign(key: bytes, signing_input: str) -> str:
    return _b64encode(hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest())


def mint(secret: str | bytes, livestream: str, expires_at: Timestamp, user_id: Optional[str] = None,
         issued_at: Optional[Timestamp] = None) -> str:
    """A playback token for ``livestream`` valid until ``expires_at``."""
    if not livestream:
        raise ValueError("livestream is required")
    claims: dict = {"aud": livestream, "exp": _seconds(expires_at)}
    if user_id is not None:
        claims["sub"] = str(user_id)
    if issued_at is not None:
        claims["iat"] = _seconds(issued_at)
    header = _b64encode(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_sign(_key(secret), signing_input)}"


def verify(secret: str | bytes, token: str, livestream: str, now: Timestamp, leeway_seconds: int = 0) -> PlaybackClaims:
    """The claims of a valid token for ``livestream`` at time ``now``; ``TokenError`` otherwise."""
    key = _key(secret)
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed token")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed token: expected header.payload.signature")
    header_b64, payload_b64, signature = parts
    try:
        header = json.loads(_b64decode(header_b64))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenError("malformed token header") from exc
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        raise TokenError(f"unsupported token algorithm (only {ALGORITHM} is accepted)")
    try:
        expected = _sign(key, f"{header_b64}.{payload_b64}")
    except UnicodeEncodeError as exc:
        raise TokenError("malformed token") from exc
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise TokenError("invalid token signature (wrong secret or altered token)")
    try:
        claims = json.loads(_b64decode(payload_b64))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenError("malformed token payload") from exc
    if not isinstance(claims, dict):
        raise TokenError("malformed token payload")

    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if livestream not in audiences:
        raise TokenError("token was issued for another livestream")
    expires_at = claims.get("exp")
    if not isinstance(expires_at, (int, float)) or isinstance(expires_at, bool):
        raise TokenError("token has no expiry (exp)")
    current = _seconds(now)
    if current >= expires_at + leeway_seconds:
        raise TokenError("token expired")
    not_before = claims.get("nbf")
    if isinstance(not_before, (int, float)) and current < not_before - leeway_seconds:
        raise TokenError("token is not valid yet")
    user_id = claims.get("sub")
    return PlaybackClaims(livestream=livestream, expires_at=int(expires_at),
                          user_id=str(user_id) if user_id is not None else None)
