"""`onair token`: mint a backstage playback token, or a personal publish token, for one member.

    onair token events/keynote --user alice            # prints the token
    onair token events/keynote --user alice --url      # prints the player URL with ?token=
    onair token events/keynote --user alice --ttl 30m
    onair token events/keynote --user alice --publish  # a personal publish token (stream key / WHIP bearer)
    onair token events/keynote --user alice --publish --url   # the RTMP publish URL with it as the key
    onair token events/keynote --user alice --publish --srt   # the SRT URL: streamid + passphrase from it

Runs with the RBAC of whoever runs it: ``get`` on the Livestream and on the Secret named by its
``status.credentialsSecret`` (the playback secret signs the token) in its namespace, and ``get``
on its CallType (cluster-scoped). The user must be a member whose role the CallType grants
``join-backstage`` (GetStream: only those may join a call in backstage), or for ``--publish``
both ``send-audio`` and ``send-video`` (GetStream: a host pushes RTMP with their own user token as
the stream key); ``--force`` mints for anyone, e.g. a support engineer checking the stream (the
ingest still refuses a publish token of someone who may not publish).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional
from urllib.parse import quote

from pydantic import ValidationError

from onair import endpoints, tokens
from onair.api.calltype import CallType
from onair.render import grants
from onair.render.credentials import PLAYBACK_SECRET
from onair.render.credentials import secret_name as credentials_secret_name

DEFAULT_TTL = timedelta(hours=2)
# An encoder is often set up the day before; the ingest checks expiry when a publish starts.
DEFAULT_PUBLISH_TTL = timedelta(hours=24)
MAX_TTL = tokens.MAX_LIFETIME  # what the origin accepts
_TTL_PART = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Refused(Exception):
    """A reason to mint nothing; the message is for the person at the terminal."""


def parse_ttl(text: str) -> timedelta:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d``, ``1h30m``: a positive duration up to MAX_TTL."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        parts = _TTL_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise argparse.ArgumentTypeError(f"invalid --ttl {text!r}: use e.g. 90s, 30m, 2h, 1d or 1h30m")
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("--ttl must be positive")
    if seconds > MAX_TTL.total_seconds():
        raise argparse.ArgumentTypeError(f"--ttl is at most {MAX_TTL.days} days: a leaked token must expire")
    return timedelta(seconds=seconds)


def parse_target(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected <namespace>/<livestream>, got {text!r}")
    return namespace, name


def check_member(livestream: Mapping, calltype: Optional[CallType], user: str, publish: bool = False) -> None:
    """Raise ``Refused`` unless ``user`` is a member whose role grants join-backstage (``publish``:
    send-audio and send-video)."""
    wanted = grants.PUBLISH_CAPABILITIES if publish else (grants.JOIN_BACKSTAGE,)
    what = " and ".join(wanted)
    spec = livestream.get("spec") or {}
    target = f"{livestream['metadata']['namespace']}/{livestream['metadata']['name']}"
    ct_name = spec.get("callType", "")
    members = spec.get("members") or []
    member = next((m for m in members if m.get("userId") == user), None)
    if member is None:
        listed = ", ".join(m.get("userId", "?") for m in members[:20]) or "none"
        raise Refused(
            f"{user!r} is not a member of {target} (members: {listed}); add them to spec.members "
            f"with a role that has {what}, or pass --force"
        )
    if calltype is None:
        raise Refused(
            f"CallType {ct_name!r} of {target} does not exist, so no role grants {what}; pass --force to mint anyway"
        )
    caps = grants.role_capabilities(calltype, member["role"])
    if caps is None:
        raise Refused(
            f"{user!r} has role {member['role']!r}, which CallType {ct_name!r} does not grant "
            f"(its roles: {', '.join(sorted(calltype.spec.grants or {})) or 'none'}); pass --force to mint anyway"
        )
    missing = [cap for cap in wanted if cap not in caps]
    if missing:
        allowed = sorted(r for r, c in (calltype.spec.grants or {}).items() if all(cap in c for cap in wanted))
        raise Refused(
            f"{user!r} has role {member['role']!r}, which CallType {ct_name!r} does not grant "
            f"{' and '.join(missing)} (roles with {'it' if len(wanted) == 1 else what}: {', '.join(allowed) or 'none'}); pass --force to "
            "mint anyway"
        )


def srt_url(livestream: Mapping, token: str) -> str:
    """The SRT push URL of a personal token: its claims in the streamid, its signature as passphrase."""
    srt = ((livestream.get("status") or {}).get("ingest") or {}).get("srt")
    if not srt:
        raise Refused("the Livestream has no status.ingest.srt (not reconciled, pull mode, or SRT not enabled)")
    return endpoints.personal_srt_url(srt, token)


def publish_url(livestream: Mapping, token: str) -> str:
    """The RTMP publish URL with the personal token as its stream key (OBS: server + key in one)."""
    rtmp = ((livestream.get("status") or {}).get("ingest") or {}).get("rtmp")
    if not rtmp:
        raise Refused(
            "the Livestream has no status.ingest.rtmp (not reconciled, pull mode, or RTMP not enabled); "
            "run without --url for the bare token, which is also the WHIP bearer token"
        )
    return f"{rtmp.rstrip('/')}/{quote(token, safe='')}"


def player_url(livestream: Mapping, token: str) -> str:
    player = ((livestream.get("status") or {}).get("playback") or {}).get("player")
    if not player:
        raise Refused(
            "the Livestream has no status.playback.player yet (not reconciled, or broadcasting is "
            "disabled); run without --url for the bare token"
        )
    return f"{player}{'&' if '?' in player else '?'}token={quote(token, safe='')}"


# ----------------------------------------------------------------------------- cluster access
def _get(kube: Any, what: str, kind: Any, namespace: Optional[str], name: str) -> Optional[dict]:
    from onair.kube import KubeError

    try:
        return kube.get(kind, namespace, name)
    except KubeError as exc:
        if exc.status in (401, 403):
            raise Refused(f"not allowed to read {what}: {exc.message}") from None
        raise Refused(f"could not read {what}: {exc.message}") from None


def _playback_secret(secret: Optional[Mapping], name: str) -> str:
    raw = ((secret or {}).get("data") or {}).get(PLAYBACK_SECRET)
    if not raw:
        raise Refused(f"Secret {name} has no {PLAYBACK_SECRET} yet (the operator creates it when it reconciles)")
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Refused(f"Secret {name} holds an unreadable {PLAYBACK_SECRET}") from None


def mint_for(
    kube: Any,
    namespace: str,
    name: str,
    user: str,
    ttl: timedelta,
    *,
    force: bool,
    url: bool,
    now: datetime,
    publish: bool = False,
    srt: bool = False,
) -> tuple[str, list[str]]:
    """(what to print, warnings) for ``user`` on Livestream ``namespace/name``; ``kube``: an
    :class:`onair.kube.SyncKube`."""
    from onair.kube import CALLTYPE, KINDS, LIVESTREAM

    target = f"{namespace}/{name}"
    ls = _get(kube, f"Livestream {target}", LIVESTREAM, namespace, name)
    if ls is None:
        raise Refused(f"Livestream {target} not found")
    warnings: list[str] = []
    ct_name = (ls.get("spec") or {}).get("callType", "")
    ct_body = _get(kube, f"CallType {ct_name}", CALLTYPE, None, ct_name)
    calltype: Optional[CallType] = None
    if ct_body is not None:
        try:
            calltype = CallType.model_validate(
                {k: ct_body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in ct_body}
            )
        except ValidationError as exc:
            raise Refused(f"CallType {ct_name} is invalid: {exc.errors()[0]['msg']}") from None
    try:
        check_member(ls, calltype, user, publish=publish)
    except Refused as refusal:
        if not force:
            raise
        warnings.append(f"--force: minting although {refusal}")

    secret_name = (ls.get("status") or {}).get("credentialsSecret") or credentials_secret_name(name)
    secret = _get(kube, f"Secret {namespace}/{secret_name}", KINDS[("v1", "Secret")], namespace, secret_name)
    if secret is None:
        raise Refused(f"Secret {namespace}/{secret_name} not found (is the operator running?)")
    key = _playback_secret(secret, f"{namespace}/{secret_name}")
    if publish:
        token = tokens.mint_publish(key, target, user, now + ttl, now)
        if srt:
            return srt_url(ls, token), warnings
        return (publish_url(ls, token) if url else token), warnings
    token = tokens.mint(key, target, now + ttl, user_id=user, issued_at=now)
    return (player_url(ls, token) if url else token), warnings


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="onair token",
        description="Print a playback token (or player URL) that lets a member watch a Livestream in backstage, "
        "or with --publish a personal publish token (or RTMP publish URL) that lets them publish.",
        epilog="Needs get on the Livestream and its credentials Secret, and on its CallType.",
    )
    ap.add_argument("target", type=parse_target, metavar="NAMESPACE/LIVESTREAM")
    ap.add_argument("--user", required=True, help="the member's userId (the token's sub)")
    ap.add_argument(
        "--ttl",
        type=parse_ttl,
        default=None,
        help="validity, e.g. 30m, 2h, 1d (default 2h, with --publish 24h; at most 30d)",
    )
    ap.add_argument(
        "--publish",
        action="store_true",
        help="a personal publish token: the RTMP stream key or WHIP bearer token of USER, who needs a "
        "role with send-audio and send-video; revoked by removing the member or the grant",
    )
    ap.add_argument(
        "--url",
        action="store_true",
        help="print the player URL (with --publish: the RTMP publish URL) with the token instead of the token",
    )
    ap.add_argument(
        "--srt",
        action="store_true",
        help="with --publish: print the SRT push URL (the token's claims "
        "in streamid=publish:..., its signature as the passphrase)",
    )
    ap.add_argument(
        "--force",
        action="store_true",
        help="mint even when USER is not a member or their role lacks join-backstage (or the send grants)",
    )
    ap.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: in a pod its ServiceAccount, else $KUBECONFIG, ~/.kube/config)",
    )
    ap.add_argument("--context", default=None, help="kubeconfig context")
    return ap


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.srt and not args.publish:
        parser.error("--srt needs --publish (SRT carries publishes, not playback)")
    namespace, name = args.target
    from onair.kube import SyncKube, load_config

    try:
        kube = SyncKube(load_config(args.kubeconfig, args.context))
    except Exception as exc:  # noqa: BLE001 - no kubeconfig etc.: one readable line, not a traceback
        print(f"onair token: cannot reach the cluster: {exc}", file=sys.stderr)
        return 1
    try:
        try:
            ttl = args.ttl or (DEFAULT_PUBLISH_TTL if args.publish else DEFAULT_TTL)
            out, warnings = mint_for(
                kube,
                namespace,
                name,
                args.user,
                ttl,
                force=args.force,
                url=args.url,
                now=datetime.now(timezone.utc),
                publish=args.publish,
                srt=args.srt,
            )
        finally:
            kube.close()
    except Refused as refusal:
        print(f"onair token: {refusal}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. the API server is unreachable
        print(f"onair token: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"onair token: {warning}", file=sys.stderr)
    print(out)
    return 0
