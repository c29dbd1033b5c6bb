"""Members and grants at run time: warn about roles the CallType does not grant, re-mint tokens.

The rendering is pure (``onair.render.grants``); this is the little state around it: which
unknown roles were already announced (an Event once per newly unknown member, not every
reconcile) and when the member tokens are due for re-minting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Optional

from onair.render.children import RenderedChildren
from onair.render.grants import unknown_roles_message

from . import events
from .runtime import LivestreamState

UNKNOWN_MEMBER_ROLE = "UnknownMemberRole"


def report_unknown_roles(state: LivestreamState, body: Mapping[str, Any], rendered: RenderedChildren) -> None:
    """A Warning Event naming members whose role is new to the unknown list (not a condition: the
    stream runs, those members just get no capabilities). A role that becomes known and then
    unknown again is announced again."""
    unknown = rendered.members.unknown
    fresh = tuple(u for u in unknown if u not in state.unknown_roles_warned)
    state.unknown_roles_warned = frozenset(unknown)
    if fresh:
        events.warn(body, UNKNOWN_MEMBER_ROLE, unknown_roles_message(rendered.members, fresh))


def tokens_refresh_at(state: LivestreamState) -> Optional[datetime]:
    return state.rendered.tokens_refresh_at if state.rendered is not None else None


def tokens_due(state: LivestreamState, now: datetime) -> bool:
    """True once the applied member tokens reached their re-mint time."""
    refresh_at = tokens_refresh_at(state)
    return refresh_at is not None and now >= refresh_at
