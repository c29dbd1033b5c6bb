"""Playback tokens: who may watch a Livestream while it is in backstage.

A token is a standard JWT signed with HS256 using the Livestream's own playback secret, so the
control plane mints them here and anyone else can mint them with any JWT library:

* ``aud``: the Livestream, ``namespace/name`` (a token for one stream never opens another)
* ``exp``: expiry, Unix seconds (required: a leaked token must stop working by itself), at most
  ``MAX_LIFETIME`` (30 days) after ``iat`` and after the moment it is checked: a token that claims
  to live longer is refused, whoever signed it
* ``sub``: optional user id, for logs and for the embedding application
* ``iat``/``nbf``: optional, honoured when present
* ``scope``: absent for a playback token; ``publish`` for a personal publish token

**Personal publish tokens** (GetStream: a host pushes RTMP with their own user token as the stream
key) are the same JWT with ``scope: publish`` and a required ``sub`` (the member) and ``iat`` (so a
member's tokens can be revoked by time, ``revokeTokensIssuedBefore``). The scope keeps the two
apart both ways: a playback token handed to a viewer never publishes, and a publish token never
watches backstage. Whether the member may publish *now* (member, role grants, revocation) is the
ingest's question (``onair.agent.ingest.auth``), not the token's.

Every time claim must be a finite number (JSON allows NaN and Infinity through Python's parser;
they would compare false against any clock and slip through).

Signing and checking are PyJWT's (``jwt.encode``/``jwt.decode``), the library reviewers know;
the rules above it are ours. Only HS256 is accepted whatever the header says
(``algorithms=[ALGORITHM]``), so a forged ``alg: none`` or a public-key algorithm can never be used
to skip the signature. The time claims are checked here and not by PyJWT, which reads the wall
clock itself: the clock stays a parameter (``now``), so these stay pure functions, and the claims
get the stricter checks above (finite numbers, the 30-day cap). PyJWT checks the audience.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Optional, Union

import jwt

if TYPE_CHECKING:
    from jwt.types import Options

ALGORITHM = "HS256"
# Tokens travel in query strings; anything longer than this is not one of ours.
MAX_TOKEN_LENGTH = 4096
# The longest validity a token may have. Member tokens live 24 h (render.grants) and `onair token
# --ttl` mints up to this; a longer claim (``exp: 1e308``) is a token that would never expire.
MAX_LIFETIME = timedelta(days=30)

Timestamp = Union[int, float, datetime]


PUBLISH_SCOPE = "publish"


class TokenError(ValueError):
    """Why a token was refused; the message is safe to show to the viewer."""


class TokenExpired(TokenError):
    """A genuine token (signature checked) whose ``exp`` has passed; ``claims`` say whose it was."""

    def __init__(self, message: str, claims: Optional[dict] = None) -> None:
        super().__init__(message)
        self.claims = claims or {}


class WrongScope(TokenError):
    """A genuine token of this livestream made for the other purpose (watch vs publish)."""


@dataclass(frozen=True)
class PublishClaims:
    livestream: str
    user_id: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class PlaybackClaims:
    livestream: str
    expires_at: int
    user_id: Optional[str] = None


def _seconds(value: Timestamp) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the playback secret is empty")
    return key


# PyJWT checks the signature, the algorithm and the audience; the time claims are ours (module doc).
_DECODE_OPTIONS: Options = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}
_HS256 = jwt.get_algorithm_by_name(ALGORITHM)


def mint(
    secret: str | bytes,
    livestream: str,
    expires_at: Timestamp,
    user_id: Optional[str] = None,
    issued_at: Optional[Timestamp] = None,
    scope: Optional[str] = None,
) -> str:
    """A playback token for ``livestream`` valid until ``expires_at``, at most ``MAX_LIFETIME``
    after ``issued_at`` (default: now); ``ValueError`` for a longer one, which no origin accepts."""
    if not livestream:
        raise ValueError("livestream is required")
    expires = _seconds(expires_at)
    start = _seconds(issued_at) if issued_at is not None else time.time()
    if expires - start > MAX_LIFETIME.total_seconds():
        raise ValueError(
            f"a playback token may be valid for at most {MAX_LIFETIME.days} days, not "
            f"{(expires - start) / 86400:.1f}: mint a shorter one (and a new one when it expires)"
        )
    claims: dict = {"aud": livestream, "exp": expires}
    if user_id is not None:
        claims["sub"] = str(user_id)
    if issued_at is not None:
        claims["iat"] = _seconds(issued_at)
    if scope is not None:
        claims["scope"] = scope
    return jwt.encode(claims, _key(secret), algorithm=ALGORITHM)


def _time_claim(claims: dict, name: str) -> Optional[float]:
    """A time claim as a finite number of seconds, or None when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TokenError(f"token claim {name} is not a number of seconds")
    if not math.isfinite(value):
        raise TokenError(f"token claim {name} is not a finite number")
    return value


def mint_publish(
    secret: str | bytes, livestream: str, user_id: str, expires_at: Timestamp, issued_at: Timestamp
) -> str:
    """A personal publish token of member ``user_id`` for ``livestream``."""
    if not user_id:
        raise ValueError("a publish token names its member (user_id)")
    return mint(secret, livestream, expires_at, user_id=user_id, issued_at=issued_at, scope=PUBLISH_SCOPE)


def signature(secret: str | bytes, header_and_payload: str) -> str:
    """The HS256 signature of ``<header>.<payload>``: what completes a token whose claims came
    without it (an SRT caller proves it holds the signature through the SRT passphrase)."""
    key = _HS256.prepare_key(_key(secret))
    return jwt.utils.base64url_encode(_HS256.sign(header_and_payload.encode("utf-8"), key)).decode("ascii")


def looks_like_token(text: str) -> bool:
    """Three base64url segments: worth verifying as a JWT rather than comparing as a stream key."""
    parts = text.split(".")
    return len(parts) == 3 and all(parts[:2]) and len(text) <= MAX_TOKEN_LENGTH


def unverified_audience(token: str) -> Optional[str]:
    """The ``aud`` a token claims, read WITHOUT checking its signature: only to tell a publisher
    whose signature fails that the token was made for another livestream (each has its own secret)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, RecursionError):
        return None
    audience = claims.get("aud") if isinstance(claims, dict) else None
    return audience if isinstance(audience, str) and len(audience) <= 300 else None


def verify(secret: str | bytes, token: str, livestream: str, now: Timestamp, leeway_seconds: int = 0) -> PlaybackClaims:
    """The claims of a valid playback token for ``livestream`` at time ``now``; ``TokenError`` otherwise."""
    claims = _verified_claims(secret, token, livestream, now, leeway_seconds)
    if claims.get("scope") == PUBLISH_SCOPE:
        raise WrongScope("a personal publish token cannot be used to watch: use a playback token")
    user_id = claims.get("sub")
    return PlaybackClaims(
        livestream=livestream, expires_at=int(claims["exp"]), user_id=str(user_id) if user_id is not None else None
    )


def verify_publish(
    secret: str | bytes, token: str, livestream: str, now: Timestamp, leeway_seconds: int = 0
) -> PublishClaims:
    """The claims of a valid personal publish token for ``livestream`` at ``now``; ``TokenExpired``
    once it has expired, ``TokenError`` for any other fault."""
    claims = _verified_claims(secret, token, livestream, now, leeway_seconds)
    if claims.get("scope") != PUBLISH_SCOPE:
        raise WrongScope("a playback token cannot publish: mint a publish token (onair token --publish)")
    user_id, issued_at = claims.get("sub"), _time_claim(claims, "iat")
    if not isinstance(user_id, str) or not user_id:
        raise TokenError("publish token names no member (sub)")
    if issued_at is None:
        raise TokenError("publish token has no issue time (iat)")
    return PublishClaims(
        livestream=livestream, user_id=user_id, issued_at=int(issued_at), expires_at=int(claims["exp"])
    )


def _verified_claims(secret: str | bytes, token: str, livestream: str, now: Timestamp, leeway_seconds: int) -> dict:
    key = _key(secret)
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed token")
    if token.count(".") != 2:
        raise TokenError("malformed token: expected header.payload.signature")
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=livestream, options=_DECODE_OPTIONS)
    except jwt.InvalidAlgorithmError as exc:
        raise TokenError(f"unsupported token algorithm (only {ALGORITHM} is accepted)") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("invalid token signature (wrong secret or altered token)") from exc
    except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError) as exc:
        raise TokenError("token was issued for another livestream") from exc
    except jwt.DecodeError as exc:
        # PyJWT names the segment at fault ("Invalid header padding", "Invalid payload string: ...").
        segment = next((name for name in ("header", "payload") if name in str(exc)), None)
        raise TokenError(f"malformed token {segment}" if segment else f"malformed token ({exc})") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token ({exc})") from exc
    expires_at = _time_claim(claims, "exp")
    if expires_at is None:
        raise TokenError("token has no expiry (exp)")
    not_before = _time_claim(claims, "nbf")
    issued_at = _time_claim(claims, "iat")
    current = _seconds(now)
    if current >= expires_at + leeway_seconds:
        raise TokenExpired("token expired", claims)
    if not_before is not None and current < not_before - leeway_seconds:
        raise TokenError("token is not valid yet")
    longest = MAX_LIFETIME.total_seconds() + leeway_seconds
    if expires_at - current > longest or (issued_at is not None and expires_at - issued_at > longest):
        raise TokenError(f"token validity exceeds the {MAX_LIFETIME.days}-day maximum (exp too far ahead)")
    return claims
