"""Who may play: everyone once the stream is open to viewers, only token holders before.

"Open" is ``Desired.viewersAllowed`` when the control plane sets it (join-ahead window,
backstage disabled), else every phase but ``backstage``. In-cluster readers (the recorder of a
transcoded recording) are no viewers: they present the livestream's read token as a bearer token
and read in any phase. Once open, a valid token still matters: its holder is a member and gets
every segment, viewers only the public ones (``dvr.py``).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from onair import tokens
from onair.agent.app import SecretFile  # noqa: F401 - re-exported: the origin's secrets are read with it

# A token is echoed into every URI of the playlists we serve; anything but the JWT alphabet
# could inject playlist lines into a link someone else opens.
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._-]{1,4096}$")
NOT_BROADCAST_NOW = (
    "the stream is not broadcast to viewers now (backstage preview, or made only for a recording): "
    "a playback token of a member is required"
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    token: Optional[str] = None  # token to carry into playlist URIs
    member: bool = False  # a valid playback token: sees the private segments (backstage preview) too


def request_token(query: Mapping[str, str], authorization: Optional[str]) -> tuple[Optional[str], bool]:
    """The presented token and whether it came in the query string (then it must be propagated)."""
    token = query.get("token")
    if token:
        return token, True
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None, False
    return None, False


def internal_reader(authorization: Optional[str], read_token: Optional[str]) -> bool:
    """``Authorization: Bearer <read token>``: an in-cluster reader, whatever the phase."""
    if not read_token or not authorization or authorization[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), read_token.encode())


def open_to_viewers(phase: str, viewers_allowed: Optional[bool]) -> bool:
    return viewers_allowed if viewers_allowed is not None else phase != "backstage"


def decide(open_: bool, token: Optional[str], secret: Optional[str], livestream: str, now: float) -> Decision:
    carried = token if token and _TOKEN_CHARS.match(token) else None
    if open_:
        member = False
        if carried and secret:
            try:
                tokens.verify(secret, carried, livestream, now)
                member = True
            except tokens.TokenError:
                pass  # an expired or foreign token is no reason to refuse what everyone may watch
        return Decision(True, token=carried, member=member)
    if not secret:
        return Decision(
            False,
            "this livestream is not open to viewers yet (backstage) and no playback secret is "
            "configured: nobody can play it",
        )
    if not token:
        return Decision(
            False,
            "this livestream is not open to viewers yet (backstage): a playback token is required "
            "(?token= or Authorization: Bearer)",
        )
    if carried is None:
        return Decision(False, "malformed playback token")
    try:
        tokens.verify(secret, token, livestream, now)
    except tokens.TokenError as exc:
        return Decision(False, f"playback token refused: {exc}")
    return Decision(True, token=carried, member=True)


def live_refusal(decision: Decision, broadcast_to_viewers: bool) -> Optional[str]:
    """Why a viewer of what is made now (WHEP) is turned away, None when it may watch: what HLS refuses
    for the live edge, a closed stream without a valid token, and anyone but a member while what is
    made is not broadcast to viewers (``publicBroadcasting`` off)."""
    if not decision.allowed:
        return decision.reason
    if not decision.member and not broadcast_to_viewers:
        return NOT_BROADCAST_NOW
    return None


def private_cache_control(value: Optional[str]) -> str:
    """``value`` (a Cache-Control header) made unfit for shared caches, lifetimes kept for the
    holder's own browser. What a token or the read token opened is for that holder only: a CDN
    in front of the origin that stored it would hand backstage bytes (and playlists carrying the
    token) to anyone asking for the same URL."""
    directives = [d.strip() for d in (value or "").split(",") if d.strip()]
    names = {d.split("=")[0].lower() for d in directives}
    if "no-store" in names:
        return ", ".join(directives)
    kept = [d for d in directives if d.split("=")[0].lower() not in ("public", "private", "s-maxage")]
    return ", ".join(["private"] + (kept or ["no-cache"]))
