"""Who may publish on this slot (nginx-rtmp ``on_publish``) and who may read it (``on_play``).

Pure: the agent gathers the facts (request, secrets, what is live) and logs/counts the verdict.
Messages never contain a secret nor the name a publisher tried (a near miss of the key is a
secret too).
"""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Optional, Sequence
from urllib.parse import unquote

from onair.api.refusals import BUSY, ENDED, INACTIVE, NO_KEY, OTHER_PROTOCOL, PROTOCOL_DISABLED, WRONG_KEY

# Internal publishers (SRT and WHIP bridges) publish as "<prefix><token>"; the token is
# random per agent start, so only processes the agent started can use these names.
BRIDGE_PREFIX = {"srt": "_onair_srt_", "whip": "_onair_whip_"}

ACCEPTED = "accepted"


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
        def first(key: str) -> str:
            values = form.getall(key, [])
            return str(values[0]) if values else ""
        return cls(name=first("name"), addr=first("addr"), clientid=first("clientid"), tcurl=first("tcurl"),
                   app=first("app"))


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


def secret_equals(candidate: str, secret: Optional[str]) -> bool:
    if not secret:
        return False
    return hmac.compare_digest(candidate.encode(), secret.encode())


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def identify(req: PublishRequest, stream_key: Optional[str], bridge_token: str,
             rtmps_addr: Optional[str]) -> tuple[Optional[str], bool]:
    """(protocol, credentials_ok). protocol is None only when nothing matched."""
    for protocol, prefix in BRIDGE_PREFIX.items():
        if req.name.startswith(prefix) and is_loopback(req.addr) and secret_equals(req.name[len(prefix):],
                                                                                   bridge_token):
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


def refusal_detail(reason: str, protocol: Optional[str], *, protocols: Sequence[str] = (),
                   holder: Optional[Claim] = None) -> str:
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


def decide(req: PublishRequest, *, stream_key: Optional[str], bridge_token: str, protocols: Sequence[str],
           active: bool, holder: Optional[Claim], rtmps_addr: Optional[str], ended: bool = False,
           addr: Optional[str] = None) -> Decision:
    """``addr``: the publisher's real address when ``req.addr`` is a bridge's (SRT: the caller)."""
    protocol, ok = identify(req, stream_key, bridge_token, rtmps_addr)
    addr = addr or req.addr

    def refuse(reason: str, detail: str) -> Decision:
        return Decision(False, protocol, reason, refused_message(protocol, addr, detail), detail)

    if protocol in ("rtmp", "rtmps") and not stream_key:
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
    return Decision(True, protocol, ACCEPTED, f"accepted {protocol} publish from {addr or 'unknown address'}")


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
        def first(key: str) -> str:
            values = form.getall(key, [])
            return str(values[0]) if values else ""
        return cls(name=first("name"), addr=first("addr"), clientid=first("clientid"), token=first("token"))


def decide_play(req: PlayRequest, *, internal_stream: str, checked: bool, read_token: Optional[str]) -> Decision:
    """Whether a reader may play. ``checked`` is False only when no read token file is configured
    (local runs and tests): then any play of the internal stream is allowed."""
    who = f"play from {req.addr or 'unknown address'}"
    if req.name != internal_stream:
        # Only the renamed publish is ever live here; any other name is a probe for stream keys.
        return Decision(False, None, PLAY_UNKNOWN_STREAM, f"refused {who}: no such stream (readers play "
                                                           f"'{internal_stream}')")
    if not checked:
        return Decision(True, None, PLAY_ACCEPTED, f"accepted {who} (plays are not checked: no read token file)")
    if not read_token:
        return Decision(False, None, PLAY_NO_TOKEN_CONFIGURED,
                        f"refused {who}: no read token is configured for this slot")
    if not req.token:
        return Decision(False, None, PLAY_NO_TOKEN, f"refused {who}: no read token (?token=) in the play URL")
    if not secret_equals(req.token, read_token):
        return Decision(False, None, PLAY_WRONG_TOKEN, f"refused {who}: wrong read token")
    return Decision(True, None, PLAY_ACCEPTED, f"accepted {who}")
