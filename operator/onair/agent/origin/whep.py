"""The WHEP sessions this origin replica let in, kept so that access is enforced for as long as they play.

An HLS viewer asks for every segment, so the access rules (``access.py``) apply at each request: back to
backstage, ``publicBroadcasting`` off, a playback token past its ``exp``, and the next request is refused.
A WHEP viewer asks once (its POST); then media flows from the transcoder with no request in between. So
the origin remembers who it let in (the session's id from the transcoder's ``Location`` and the playback
token it came with, verified again as HLS would verify it: expiry and the current secret) and ends at the
transcoder every session the rules now refuse, when the desired state changes and as tokens expire.

A session is let in by the replica that proxied its POST, which checks it from then on (the operator
pushes the desired state to every replica). The origin hands a member's token to the transcoder with the
offer, and the transcoder lists its sessions with their tokens (``GET /whep``): every replica takes on the
sessions it does not know (let in by another replica, or by this pod before it restarted), so none plays
unchecked; ending one twice is harmless (the second DELETE is a 404). One ended by its viewer (DELETE,
through any replica) or by the transcoder (connection gone, broadcast stopped) drops out when the
transcoder no longer lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

# Sessions remembered per replica, at most: far above the transcoder's viewers at once
# (``whepMaxViewers``, 500 by default), whose list prunes the table; one more POST gets 503 rather
# than a session nobody would end.
MAX_SESSIONS = 5000
# How often the table is compared with the transcoder's list of sessions (those ended there drop out).
RECONCILE_SECONDS = 10.0
# A session the transcoder could not be told to end is asked about again after this long.
END_RETRY_SECONDS = 5.0


@dataclass
class Session:
    id: str
    token: Optional[str]  # the playback token of a member, None for a viewer let in without one
    admitted_at: float  # time.monotonic()
    ending: bool = False  # its end was asked of the transcoder, not yet confirmed


def session_id(location: Optional[str]) -> Optional[str]:
    """The session id at the end of a WHEP ``Location`` (``whep/<id>``, ``/whep/<id>``, a URL)."""
    if not location:
        return None
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    return tail or None


class Sessions:
    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session: str) -> bool:
        return session in self._sessions

    def full(self) -> bool:
        return len(self._sessions) >= self.limit

    def admit(self, session: str, token: Optional[str], now: float) -> None:
        self._sessions[session] = Session(session, token, now)

    def forget(self, session: str) -> None:
        self._sessions.pop(session, None)

    def refused(self, rule: Callable[[Optional[str]], Optional[str]]) -> list[tuple[Session, str]]:
        """The sessions ``rule`` (a token, None without one -> why it is refused now, None if it may watch)
        turns away, with the reason; they are marked ending, so one change ends each once."""
        out = []
        for session in self._sessions.values():
            if session.ending:
                continue
            reason = rule(session.token)
            if reason is not None:
                session.ending = True
                out.append((session, reason))
        return out

    def end_failed(self, session: str) -> None:
        """The transcoder could not be told: the next pass tries again."""
        if session in self._sessions:
            self._sessions[session].ending = False

    def reconcile(self, listed: Mapping[str, Optional[str]], asked_at: float) -> tuple[list[str], list[str]]:
        """The transcoder's list (session id -> the member's token, asked for at ``asked_at``): forget what
        it no longer has (a session admitted since the question may be missing only because it is newer:
        kept), take on what this replica does not know (up to the limit). The ids forgotten, taken on."""
        gone = [s.id for s in self._sessions.values() if s.admitted_at < asked_at and s.id not in listed]
        for session in gone:
            del self._sessions[session]
        adopted = []
        for session, token in listed.items():
            if session not in self._sessions and not self.full():
                self._sessions[session] = Session(session, token, asked_at)
                adopted.append(session)
        return gone, adopted


def listed_sessions(body: object) -> dict[str, Optional[str]]:
    """The transcoder's ``GET /whep`` answer as session id -> token; ``ValueError`` when it is not one."""
    sessions = body.get("sessions") if isinstance(body, dict) else None
    if not isinstance(sessions, list):
        raise ValueError(f"not a WHEP session list: {str(body)[:200]}")
    out: dict[str, Optional[str]] = {}
    for entry in sessions:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ValueError(f"not a WHEP session: {str(entry)[:200]}")
        token = entry.get("token")
        out[entry["id"]] = token if isinstance(token, str) and token else None
    return out
