"""The Warning Event a batch of ingest refusals becomes: what was refused, and how to fix it.

Pure. The owner reads these in ``kubectl describe livestream`` / ``kubectl get events``: the
encoder of a refused RTMP publish only shows "Input/output error", so the Event is the one place
that says why and what to change. Never names a credential's value, only where to find it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from onair.api import refusals
from onair.render.conditions import rfc3339
from onair.render.credentials import PUBLISH_URL_KEYS, SRT_PASSPHRASE, STREAM_KEY, WHIP_TOKEN

# Event messages are capped by the API server (1 KiB is what kubectl shows comfortably).
MAX_MESSAGE = 1000


@dataclass(frozen=True)
class RefusalBatch:
    """Refusals of one reason not announced yet (maybe over several protocols and slots)."""

    reason: str
    count: int
    since: datetime
    protocols: tuple[str, ...]
    slots: tuple[str, ...]
    last_protocol: Optional[str]
    last_slot: str
    last_at: datetime
    last_address: Optional[str]
    last_message: str


def _publish_url_key(protocol: str, slot: str) -> Optional[str]:
    return PUBLISH_URL_KEYS.get(f"backup_{protocol}" if slot == "backup" else protocol)


def _credential_fix(protocol: Optional[str], slot: str, secret: str) -> str:
    url_key = _publish_url_key(protocol or "rtmp", slot)
    whole = f" ({url_key} there holds the whole URL)" if url_key else ""
    if protocol == "srt":
        return f"use the SRT passphrase from Secret {secret}, key {SRT_PASSPHRASE}{whole}"
    if protocol == "whip":
        return f"send 'Authorization: Bearer <token>' with the token from Secret {secret}, key {WHIP_TOKEN}{whole}"
    return f"publish with the stream key from Secret {secret}, key {STREAM_KEY}{whole}"


def _missing_key_fix(protocol: Optional[str], secret: str) -> str:
    key = WHIP_TOKEN if protocol == "whip" else STREAM_KEY
    return (
        f"the ingest has no {key} to compare with: check that Secret {secret} has the key {key} "
        "(the operator restores a deleted Secret) and that the ingest pod mounts it"
    )


def fix(reason: str, protocol: Optional[str], slot: str, namespace: str, livestream: str, secret: str) -> str:
    """How the owner makes the next publish work."""
    if reason == refusals.WRONG_KEY:
        return _credential_fix(protocol, slot, secret)
    if reason == refusals.NO_KEY:
        return _missing_key_fix(protocol, secret)
    if reason == refusals.INACTIVE:
        return (
            f"the Livestream is switched off (spec.active: false); to accept pushes: kubectl patch livestream "
            f'{livestream} -n {namespace} --type merge -p \'{{"spec":{{"active":true}}}}\''
        )
    if reason == refusals.ENDED:
        return "an ended Livestream refuses every push for good; create a new Livestream for the next broadcast"
    if reason == refusals.BUSY:
        return (
            "stop one of the two encoders; a second encoder belongs on the backup ingest "
            "(settingsOverride.ingest.backup: true, URLs in status.ingest)"
        )
    if reason == refusals.OTHER_PROTOCOL:
        return "only one protocol at a time: stop the encoder that is live before pushing with another protocol"
    if reason == refusals.PROTOCOL_DISABLED:
        return (
            f"push with a protocol listed in status.ingest, or enable {protocol} in ingest.protocols "
            "(CallType settings or spec.settingsOverride)"
        )
    if reason == refusals.UNSUPPORTED_CODEC:
        return (
            "set the encoder to H.264 video with AAC audio (over SRT, HEVC or MPEG-2 video and MP2/AC-3 "
            "audio are converted)"
        )
    if reason == refusals.NO_VIDEO:
        return "add a video source to the encoder: a livestream needs H.264 video"
    if reason == refusals.NO_AUDIO:
        return "enable an audio track (Opus) in the WHIP client: WHIP publishes need both audio and video"
    if reason == refusals.BAD_REQUEST:
        return "check the encoder's push settings against the URLs in status.ingest"
    mint = f"onair token {namespace}/{livestream} --publish --user <userId>"
    if reason == refusals.TOKEN_EXPIRED:
        return f"mint a new personal publish token ({mint}) and put it in the encoder"
    if reason == refusals.TOKEN_REVOKED:
        return (
            f"the member's tokens were revoked (spec.members[].revokeTokensIssuedBefore): mint a new one ({mint}) "
            "if they may publish again"
        )
    if reason == refusals.NOT_MEMBER:
        return (
            f"add the user to spec.members of Livestream {livestream} with a role that grants send-audio and "
            "send-video, or publish with the stream key"
        )
    if reason == refusals.NO_SEND_GRANT:
        return (
            "give the member a role whose CallType grants send-audio and send-video (kubectl get calltype "
            "<name> -o jsonpath='{.spec.grants}'), or publish with the stream key"
        )
    return "see the ingest pod's log"


def event(batch: RefusalBatch, namespace: str, livestream: str, secret: str) -> tuple[str, str]:
    """(Event reason, message) for ``batch``; ``secret``: the credentials Secret's name."""
    protocols = list(batch.protocols) or [batch.last_protocol or "unknown"]
    slots = " and ".join(sorted(set(batch.slots) or {batch.last_slot}))
    where = f"the {slots} ingest" + ("s" if " and " in slots else "")
    who = f"from {batch.last_address}" if batch.last_address else "from an unknown address"
    noun, verb = ("publish", "was") if batch.count == 1 else ("publishes", "were")
    head = f"{batch.count} {noun} ({', '.join(protocols)}) to {where} {verb} refused"
    if batch.count == 1:
        head += f" at {rfc3339(batch.last_at)}, {who}: {batch.last_message}."
    else:
        head += f" since {rfc3339(batch.since)}; the last one at {rfc3339(batch.last_at)}, {who}: {batch.last_message}."
    fixes: list[str] = []
    for protocol in protocols:
        for slot in sorted(set(batch.slots) or {batch.last_slot}):
            text = fix(batch.reason, protocol, slot, namespace, livestream, secret)
            if text not in fixes:
                fixes.append(text)
    message = f"{head} Fix: {'; '.join(fixes)}."
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return refusals.event_reason(batch.reason), message
