"""Who may publish on this slot (nginx-rtmp ``on_publish``) and who may read it (``on_play``).

Pure: the agent gathers the facts (request, secrets, what is live) and logs/counts the verdict.
Messages never contain a secret nor the name a publisher tried (a near miss of the key is a
secret too).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Optional, Sequence
from urllib.parse import unquote

from onair import tokens
from onair.api.agent import PublishMember
from onair.api.refusals import (
    BUSY,
    ENDED,
    INACTIVE,
    NO_KEY,
    NO_SEND_GRANT,
    NOT_MEMBER,
    OTHER_PROTOCOL,
    PROTOCOL_DISABLED,
    TOKEN_EXPIRED,
    TOKEN_REVOKED,
    WRONG_KEY,
)

# Internal publishers (SRT and WHIP bridges) publish as "<prefix><token>"; the token is
# random per agent start, so only processes the agent started can use these names.
BRIDGE_PREFIX = {"srt": "_onair_srt_", "whip": "_onair_whip_"}

ACCEPTED = "accepted"


def _first_values(form, request_class: type) -> dict[str, str]:
    """The first value of each of ``request_class``'s fields in nginx-rtmp's form (a multidict):
    nginx writes its own fields first, whatever a client appends after them is ignored."""
    values = {}
    for field in fields(request_class):
        given = form.getall(field.name, [])
        values[field.name] = str(given[0]) if given else ""
    return values


@dataclass(frozen=True)
class PublishRequest:
    """The form nginx-rtmp posts. Publisher-supplied query args are appended after nginx's own
    fields, so only the first value of each field can be trusted."""

    name: str
    addr: str
    clientid: str
    tcurl: str = ""
    app: str = ""

    @classmethod
    def from_form(cls, form) -> "PublishRequest":
        """``form``: a multidict (aiohttp's ``await request.post()``)."""
        return cls(**_first_values(form, cls))


@dataclass(frozen=True)
class Claim:
    """A protocol that holds (or is about to hold) the slot."""

    protocol: str
    clientid: Optional[str] = None


@dataclass(frozen=True)
class Decision:
    accept: bool
    protocol: Optional[str]
    reason: str
    message: str  # for the log: who, and the verdict
    detail: str = ""  # the verdict alone, for the owner (IngestStatus.refusals)
    user_id: Optional[str] = None  # the member whose personal publish token this is


# ----------------------------------------------------------------------------- personal tokens
# A namespace/name as Kubernetes spells it: the only kind of unverified ``aud`` worth repeating.
_LIVESTREAM_REF = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class PersonalVerdict:
    """What a personal publish token is worth now. ``user_id`` only once its signature held."""

    reason: str  # ACCEPTED or a refusal code
    detail: str
    user_id: Optional[str] = None
    issued_at: Optional[int] = None  # the token's iat, to drop its holder when tokens are revoked later

    @property
    def accept(self) -> bool:
        return self.reason == ACCEPTED


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_personal_token(
    token: str, *, secret: Optional[str], livestream: str, members: Optional[Sequence[PublishMember]], now: float
) -> PersonalVerdict:
    """Whether ``token`` lets its member publish on ``livestream`` at ``now`` (Unix seconds).

    ``members``: the Livestream's members as the operator last sent them (``Desired.members``);
    None while the ingest has not heard from the operator, when no personal token is honoured.
    Details name the member and what is wrong, never the token.
    """
    if not secret:
        return PersonalVerdict(
            WRONG_KEY,
            "personal publish tokens are not configured on this ingest (no publish token secret): use the stream key",
        )
    try:
        claims = tokens.verify_publish(secret, token, livestream, now)
    except tokens.TokenExpired as exc:
        user = exc.claims.get("sub")
        user = user if isinstance(user, str) and user else None
        return PersonalVerdict(
            TOKEN_EXPIRED,
            f"the personal publish token of {user or 'a member'} expired at {_when(float(exc.claims.get('exp', now)))}",
            user,
        )
    except tokens.WrongScope as exc:
        return PersonalVerdict(WRONG_KEY, str(exc))
    except tokens.TokenError as exc:
        audience = tokens.unverified_audience(token)
        if audience and audience != livestream and _LIVESTREAM_REF.match(audience):
            return PersonalVerdict(WRONG_KEY, f"the token was issued for another livestream ({audience})")
        return PersonalVerdict(WRONG_KEY, f"wrong stream key or invalid personal publish token ({exc})")
    user = claims.user_id
    if members is None:
        return PersonalVerdict(
            NOT_MEMBER,
            f"{user}'s personal token cannot be checked yet: the ingest has not "
            "received the livestream's members from the operator",
            user,
        )
    member = next((m for m in members if m.user_id == user), None)
    if member is None:
        return PersonalVerdict(NOT_MEMBER, f"{user} is not a member of the livestream (spec.members)", user)
    revoked = member.revoke_tokens_issued_before
    if revoked is not None and claims.issued_at < _utc(revoked).timestamp():
        return PersonalVerdict(
            TOKEN_REVOKED,
            f"{user}'s personal publish token was issued at "
            f"{_when(claims.issued_at)}, before their tokens were revoked "
            f"({_when(_utc(revoked).timestamp())})",
            user,
        )
    if not member.may_publish:
        return PersonalVerdict(
            NO_SEND_GRANT,
            f"{user}'s role {member.role!r} does not grant send-audio and send-video in the livestream's CallType",
            user,
        )
    return PersonalVerdict(ACCEPTED, f"personal publish token of {user}", user, claims.issued_at)


def still_allowed(
    user_id: str, issued_at: Optional[float], members: Optional[Sequence[PublishMember]]
) -> Optional[PersonalVerdict]:
    """None while member ``user_id`` (publishing with a token issued at ``issued_at``) may go on
    publishing under ``members``; else why not (the live publisher is then dropped)."""
    if members is None:
        return None  # nothing new is known: an agent restart does not drop who publishes
    member = next((m for m in members if m.user_id == user_id), None)
    if member is None:
        return PersonalVerdict(NOT_MEMBER, f"{user_id} was removed from the livestream's members", user_id)
    revoked = member.revoke_tokens_issued_before
    if revoked is not None and issued_at is not None and issued_at < _utc(revoked).timestamp():
        return PersonalVerdict(
            TOKEN_REVOKED,
            f"{user_id}'s personal publish tokens issued before {_when(_utc(revoked).timestamp())} were revoked",
            user_id,
        )
    if not member.may_publish:
        return PersonalVerdict(
            NO_SEND_GRANT, f"{user_id}'s role {member.role!r} no longer grants send-audio and send-video", user_id
        )
    return None


def secret_equals(candidate: str, secret: Optional[str]) -> bool:
    if not secret:
        return False
    return hmac.compare_digest(candidate.encode(), secret.encode())


def bearer(header: Optional[str]) -> str:
    """The token of ``Authorization: Bearer <token>``; empty otherwise."""
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def identify(
    req: PublishRequest, stream_key: Optional[str], bridge_token: str, rtmps_addr: Optional[str]
) -> tuple[Optional[str], bool]:
    """(protocol, credentials_ok). protocol is None only when nothing matched."""
    for protocol, prefix in BRIDGE_PREFIX.items():
        if (
            req.name.startswith(prefix)
            and is_loopback(req.addr)
            and secret_equals(req.name[len(prefix) :], bridge_token)
        ):
            return protocol, True
    # Anything else, a guessed bridge name included, is an RTMP(S) publisher trying a key.
    if rtmps_addr:
        protocol = "rtmps" if req.addr == rtmps_addr else "rtmp"
    else:  # no distinct proxy address: the client's own tcUrl is the best we have
        protocol = "rtmps" if req.tcurl.lower().startswith("rtmps://") else "rtmp"
    # OBS sends the key verbatim; URL builders percent-encode it. Either spelling is the key.
    ok = secret_equals(req.name, stream_key) or secret_equals(unquote(req.name), stream_key)
    return protocol, ok


def refused_message(protocol: Optional[str], addr: Optional[str], detail: str) -> str:
    return f"refused {protocol or 'rtmp'} publish from {addr or 'unknown address'}: {detail}"


def refusal_detail(
    reason: str, protocol: Optional[str], *, protocols: Sequence[str] = (), holder: Optional[Claim] = None
) -> str:
    """The owner-facing words for a slot-level refusal (credentials are checked elsewhere)."""
    if reason == PROTOCOL_DISABLED:
        return f"{protocol} is not enabled for this livestream (enabled: {', '.join(protocols) or 'none'})"
    if reason == ENDED:
        return "the livestream has ended"
    if reason == INACTIVE:
        return "the livestream is not active"
    if reason == BUSY:
        return f"another {protocol} publisher is already live on this slot"
    if reason == OTHER_PROTOCOL and holder is not None:
        return f"{holder.protocol} is already live on this slot (only one protocol at a time)"
    return reason


def decide(
    req: PublishRequest,
    *,
    stream_key: Optional[str],
    bridge_token: str,
    protocols: Sequence[str],
    active: bool,
    holder: Optional[Claim],
    rtmps_addr: Optional[str],
    ended: bool = False,
    addr: Optional[str] = None,
    personal: Optional[PersonalVerdict] = None,
    user_id: Optional[str] = None,
) -> Decision:
    """``addr``: the publisher's real address when ``req.addr`` is a bridge's (SRT: the caller).
    ``personal``: the verdict on the RTMP stream name as a personal publish token
    (``check_personal_token``), when it looks like one and is not the stream key; ``user_id``:
    the member a bridge publishes for (a WHIP or SRT caller whose token was checked there)."""
    protocol, ok = identify(req, stream_key, bridge_token, rtmps_addr)
    addr = addr or req.addr

    def refuse(reason: str, detail: str) -> Decision:
        return Decision(False, protocol, reason, refused_message(protocol, addr, detail), detail, user)

    user = user_id if ok else None
    if not ok and personal is not None and protocol in ("rtmp", "rtmps"):
        user = personal.user_id
        if not personal.accept:
            return refuse(personal.reason, personal.detail)
        ok = True
    if protocol in ("rtmp", "rtmps") and not stream_key and not ok:
        return refuse(NO_KEY, "no stream key is configured for this slot")
    if not ok:
        return refuse(WRONG_KEY, "wrong stream key")
    if protocol not in protocols:
        return refuse(PROTOCOL_DISABLED, refusal_detail(PROTOCOL_DISABLED, protocol, protocols=protocols))
    if not active:
        reason = ENDED if ended else INACTIVE
        return refuse(reason, refusal_detail(reason, protocol))
    if holder is not None:
        reason = BUSY if holder.protocol == protocol else OTHER_PROTOCOL
        return refuse(reason, refusal_detail(reason, protocol, holder=holder))
    by = f" by member {user}" if user else ""
    return Decision(
        True, protocol, ACCEPTED, f"accepted {protocol} publish{by} from {addr or 'unknown address'}", user_id=user
    )


# ----------------------------------------------------------------------------- plays
PLAY_ACCEPTED = "accepted"
PLAY_UNKNOWN_STREAM = "unknown_stream"
PLAY_NO_TOKEN = "no_token"
PLAY_WRONG_TOKEN = "wrong_token"
PLAY_NO_TOKEN_CONFIGURED = "no_token_configured"


@dataclass(frozen=True)
class PlayRequest:
    """nginx-rtmp's ``on_play`` form; the player's ``?token=`` arrives as a field of its own,
    after nginx's fields (so ``name`` and ``addr`` come first and cannot be forged)."""

    name: str
    addr: str
    clientid: str
    token: str = ""

    @classmethod
    def from_form(cls, form) -> "PlayRequest":
        return cls(**_first_values(form, cls))


def decide_play(req: PlayRequest, *, internal_stream: str, checked: bool, read_token: Optional[str]) -> Decision:
    """Whether a reader may play. ``checked`` is False only when no read token file is configured
    (local runs and tests): then any play of the internal stream is allowed."""
    who = f"play from {req.addr or 'unknown address'}"
    if req.name != internal_stream:
        # Only the renamed publish is ever live here; any other name is a probe for stream keys.
        return Decision(
            False, None, PLAY_UNKNOWN_STREAM, f"refused {who}: no such stream (readers play '{internal_stream}')"
        )
    if not checked:
        return Decision(True, None, PLAY_ACCEPTED, f"accepted {who} (plays are not checked: no read token file)")
    if not read_token:
        return Decision(
            False, None, PLAY_NO_TOKEN_CONFIGURED, f"refused {who}: no read token is configured for this slot"
        )
    if not req.token:
        return Decision(False, None, PLAY_NO_TOKEN, f"refused {who}: no read token (?token=) in the play URL")
    if not secret_equals(req.token, read_token):
        return Decision(False, None, PLAY_WRONG_TOKEN, f"refused {who}: wrong read token")
    return Decision(True, None, PLAY_ACCEPTED, f"accepted {who}")
