"""Grants and members: who may watch a Livestream while it is in backstage.

GetStream: "When a call is in backstage mode, only users with the join-backstage capability are
allowed to join." Here a member (``spec.members[]``: userId, role) has the capabilities the
Livestream's CallType grants to that role (``CallType.spec.grants[role]``); a role the CallType
does not name grants nothing and is reported (``MemberAccess.unknown``), never an error that
stalls the stream.

Members whose role grants ``join-backstage`` get a playback token each, in the Secret
``<ls>-member-tokens`` (``render_member_tokens_secret``): key = the userId made a valid Secret
key (``secret_key``), value = an HS256 JWT from ``onair.tokens`` for this Livestream with
``sub`` = the userId. Tokens are valid ``TOKEN_VALIDITY`` (24 h) and are re-minted every
``TOKEN_REFRESH`` (12 h), so whoever reads the Secret always gets a token with at least 12 h left.
``iat``/``exp`` come from a time bucket of ``now``, never ``now`` itself: re-rendering within a
bucket is byte-identical and the server-side apply is a no-op. The Secret exists only while at
least one member can join backstage.

Members whose role grants both ``send-audio`` and ``send-video`` may publish with a personal
publish token (``onair token --publish``; ``onair.tokens``): the ingest gets every member's
right on each status poll (``publish_members`` → ``Desired.members``) and checks tokens against
it, so removing a member or a grant revokes their tokens at the next poll.

Pure: the clock is a parameter.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Mapping, Optional, Union

from onair import tokens
from onair.api.agent import PublishMember
from onair.api.calltype import CallType
from onair.api.livestream import Livestream, LivestreamSpec

JOIN_BACKSTAGE = "join-backstage"
SEND_AUDIO = "send-audio"
SEND_VIDEO = "send-video"
# A publish carries video and, nearly always, audio; neither can be stripped from it, so a personal
# publish token needs both.
PUBLISH_CAPABILITIES = (SEND_AUDIO, SEND_VIDEO)
TOKEN_VALIDITY = timedelta(hours=24)
TOKEN_REFRESH = timedelta(hours=12)
TOKENS_EXPIRE_ANNOTATION = "onair.dev/tokens-expire-at"
COMPONENT = "member-tokens"

# Kubernetes' rule for Secret/ConfigMap keys (IsConfigMapKey): this alphabet, at most 253
# characters, not "." or "..", not starting with "..".
_KEY_CHARS = re.compile(r"^[-._a-zA-Z0-9]+$")
_NOT_KEY_CHAR = re.compile(r"[^-._a-zA-Z0-9]")


@dataclass(frozen=True)
class UnknownRole:
    user_id: str
    role: str


@dataclass(frozen=True)
class MemberAccess:
    """What the members of one Livestream may do, from its CallType's grants."""

    calltype: str = ""
    # Roles the CallType grants, sorted (for messages naming what would have been valid).
    roles: tuple[str, ...] = ()
    # userId -> capabilities, in spec order; members with an unknown role map to ().
    capabilities: tuple[tuple[str, tuple[str, ...]], ...] = ()
    unknown: tuple[UnknownRole, ...] = field(default=())

    @property
    def backstage(self) -> tuple[str, ...]:
        """userIds whose role grants join-backstage, in spec order."""
        return tuple(user for user, caps in self.capabilities if JOIN_BACKSTAGE in caps)


def role_capabilities(calltype: Optional[CallType], role: str) -> Optional[tuple[str, ...]]:
    """The capabilities ``calltype`` grants ``role``; None when it does not name the role."""
    grants = calltype.spec.grants if calltype is not None else None
    if not grants or role not in grants:
        return None
    return tuple(dict.fromkeys(grants[role]))  # de-duplicated, order kept


def _spec(livestream: Union[Mapping, Livestream, LivestreamSpec]) -> LivestreamSpec:
    if isinstance(livestream, LivestreamSpec):
        return livestream
    if isinstance(livestream, Livestream):
        return livestream.spec
    return LivestreamSpec.model_validate(livestream.get("spec") or {})


def member_access(livestream: Union[Mapping, Livestream, LivestreamSpec], calltype: Optional[CallType]) -> MemberAccess:
    """Capabilities of every member of ``livestream`` (raw object, model or spec) under ``calltype``."""
    spec = _spec(livestream)
    roles = tuple(sorted((calltype.spec.grants or {}) if calltype is not None else ()))
    caps: list[tuple[str, tuple[str, ...]]] = []
    unknown: list[UnknownRole] = []
    for member in spec.members or ():
        granted = role_capabilities(calltype, member.role)
        if granted is None:
            unknown.append(UnknownRole(member.user_id, member.role))
        caps.append((member.user_id, granted or ()))
    return MemberAccess(calltype=spec.call_type, roles=roles, capabilities=tuple(caps), unknown=tuple(unknown))


def capabilities(
    livestream: Union[Mapping, Livestream, LivestreamSpec], calltype: Optional[CallType], user_id: str
) -> Optional[tuple[str, ...]]:
    """Capabilities of member ``user_id``; None when ``user_id`` is not a member."""
    for user, caps in member_access(livestream, calltype).capabilities:
        if user == user_id:
            return caps
    return None


def backstage_members(
    livestream: Union[Mapping, Livestream, LivestreamSpec], calltype: Optional[CallType]
) -> list[str]:
    """userIds allowed to watch while the Livestream is in backstage."""
    return list(member_access(livestream, calltype).backstage)


def may_publish(capabilities: tuple[str, ...] | list[str]) -> bool:
    return all(cap in capabilities for cap in PUBLISH_CAPABILITIES)


def publish_members(
    livestream: Union[Mapping, Livestream, LivestreamSpec], access: MemberAccess
) -> list[PublishMember]:
    """Every member as the ingest judges personal publish tokens (``Desired.members``)."""
    spec = _spec(livestream)
    caps = dict(access.capabilities)
    return [
        PublishMember(
            user_id=m.user_id,
            role=m.role,
            may_publish=may_publish(caps.get(m.user_id, ())),
            revoke_tokens_issued_before=m.revoke_tokens_issued_before,
        )
        for m in spec.members or ()
    ]


def unknown_roles_message(access: MemberAccess, unknown: Optional[tuple[UnknownRole, ...]] = None) -> str:
    """The text of the ``UnknownMemberRole`` Warning Event."""
    entries = unknown if unknown is not None else access.unknown
    who = ", ".join(f"{u.user_id} (role {u.role!r})" for u in entries)
    roles = ", ".join(access.roles) if access.roles else "none"
    verb = "has a role" if len(entries) == 1 else "have roles"
    text = (
        f"Member{'s' if len(entries) != 1 else ''} {who} {verb} that CallType {access.calltype!r} does not grant "
        f"(its roles: {roles}); they get no capabilities and cannot watch backstage."
    )
    return text if len(text) <= 1000 else text[:997] + "..."


# ----------------------------------------------------------------------------- tokens
def secret_key(user_id: str) -> str:
    """The key of ``user_id``'s token in the member-tokens Secret.

    The userId itself when it is a valid Secret key (letters, digits, ``-``, ``_``, ``.``);
    otherwise every other character becomes ``_`` and a hash of the userId is appended, so two
    userIds never share a key (``alice@example.com`` -> ``alice_example.com-<10 hex>``).
    """
    if _KEY_CHARS.match(user_id) and not user_id.startswith("..") and user_id != "." and len(user_id) <= 253:
        return user_id
    cleaned = _NOT_KEY_CHAR.sub("_", user_id)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    digest = hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:10]
    return f"{cleaned[:200]}-{digest}"


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)


def token_window(now: datetime) -> tuple[datetime, datetime]:
    """(issued_at, expires_at) of the member tokens rendered at ``now``: the start of ``now``'s
    TOKEN_REFRESH bucket (Unix-epoch aligned) and that plus TOKEN_VALIDITY."""
    bucket = int(TOKEN_REFRESH.total_seconds())
    seconds = int(_aware(now).timestamp())
    start = datetime.fromtimestamp(seconds - seconds % bucket, tz=timezone.utc)
    return start, start + TOKEN_VALIDITY


def tokens_refresh_at(now: datetime) -> datetime:
    """When the tokens rendered at ``now`` must be re-minted: the start of the next bucket."""
    issued_at, _ = token_window(now)
    return issued_at + TOKEN_REFRESH


def secret_name(livestream_name: str) -> str:
    return f"{livestream_name}-{COMPONENT}"


def livestream_audience(ls_meta: Mapping) -> str:
    """The ``aud`` of this Livestream's tokens, as the origin checks it."""
    return f"{ls_meta['namespace']}/{ls_meta['name']}"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def member_tokens(
    ls_meta: Mapping, user_ids: tuple[str, ...] | list[str], playback_secret: str, now: datetime
) -> dict[str, str]:
    """Secret key -> playback token for every user in ``user_ids``."""
    issued_at, expires_at = token_window(now)
    audience = livestream_audience(ls_meta)
    return {
        secret_key(user): tokens.mint(playback_secret, audience, expires_at, user_id=user, issued_at=issued_at)
        for user in user_ids
    }


def render_member_tokens_secret(
    ls_meta: Mapping,
    user_ids: tuple[str, ...] | list[str],
    playback_secret: str,
    now: datetime,
    labels: Mapping[str, str],
    owner_references: list[dict],
) -> Optional[dict]:
    """The ``<ls>-member-tokens`` Secret; None when nobody may join backstage (then it is pruned)."""
    if not user_ids:
        return None
    values = member_tokens(ls_meta, user_ids, playback_secret, now)
    _, expires_at = token_window(now)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(ls_meta["name"]),
            "namespace": ls_meta["namespace"],
            "labels": dict(labels),
            "annotations": {TOKENS_EXPIRE_ANNOTATION: expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "ownerReferences": owner_references,
        },
        "type": "Opaque",
        # data, not stringData: stringData is write-only, so an apply of it never compares equal.
        "data": {key: _b64(values[key]) for key in sorted(values)},
    }
