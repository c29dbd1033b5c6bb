"""Why the ingest refused or dropped a publish, and the Warning Event each reason becomes.

The reason codes cross the agent contract (``IngestStatus.refusals[].reason``, the ``reason``
label of ``onair_ingest_refusals``, the ``reason`` of a WHIP error body); the operator turns new
refusals into Warning Events on the Livestream with the matching Event reason. The wire type is
a plain string, not a Literal: an operator older than its agents must still read their status
(an unknown code becomes the generic ``PublishRefused``).
"""

from __future__ import annotations

WRONG_KEY = "wrong_key"  # stream key, SRT passphrase or WHIP bearer token
NO_KEY = "no_key_configured"  # the slot has no credential to compare with
INACTIVE = "inactive"  # spec.active: false
ENDED = "ended"  # spec.phase: ended
BUSY = "busy"  # another publisher of the same protocol holds the slot
OTHER_PROTOCOL = "other_protocol_live"  # another protocol holds the slot (one at a time)
PROTOCOL_DISABLED = "protocol_disabled"  # the CallType does not enable this protocol
UNSUPPORTED_CODEC = "unsupported_codec"  # a codec the pipeline can neither use nor convert
NO_VIDEO = "no_video"  # audio only: a livestream needs a video track
NO_AUDIO = "no_audio"  # WHIP without an audio track (Gcore: "both tracks must be present")
BAD_REQUEST = (
    "bad_request"  # a WHIP request that is not an ingestible offer, an SRT handshake refused for another cause
)
# Personal publish tokens (a member's own token instead of the stream key); a token that is not
# one for this livestream at all (bad signature, another livestream's, a playback token) is WRONG_KEY.
TOKEN_EXPIRED = "token_expired"  # the member's token has expired
TOKEN_REVOKED = "token_revoked"  # issued before the member's revokeTokensIssuedBefore
NOT_MEMBER = "not_member"  # the token's user is not (or no longer) in spec.members
NO_SEND_GRANT = "no_send_grant"  # the member's role lacks send-video or send-audio in the CallType

REFUSAL_REASONS = (
    WRONG_KEY,
    NO_KEY,
    INACTIVE,
    ENDED,
    BUSY,
    OTHER_PROTOCOL,
    PROTOCOL_DISABLED,
    UNSUPPORTED_CODEC,
    NO_VIDEO,
    NO_AUDIO,
    BAD_REQUEST,
    TOKEN_EXPIRED,
    TOKEN_REVOKED,
    NOT_MEMBER,
    NO_SEND_GRANT,
)

# Event reasons (CamelCase, as Kubernetes wants them), one per refusal reason, so that
# `kubectl get events --field-selector reason=PublishRefusedWrongKey` finds exactly those.
EVENT_REASONS = {
    WRONG_KEY: "PublishRefusedWrongKey",
    NO_KEY: "PublishRefusedNoKey",
    INACTIVE: "PublishRefusedInactive",
    ENDED: "PublishRefusedEnded",
    BUSY: "PublishRefusedBusy",
    OTHER_PROTOCOL: "PublishRefusedOtherProtocol",
    PROTOCOL_DISABLED: "PublishRefusedProtocolDisabled",
    UNSUPPORTED_CODEC: "PublishRefusedUnsupportedCodec",
    NO_VIDEO: "PublishRefusedNoVideo",
    NO_AUDIO: "PublishRefusedNoAudio",
    BAD_REQUEST: "PublishRefusedBadRequest",
    TOKEN_EXPIRED: "PublishRefusedTokenExpired",
    TOKEN_REVOKED: "PublishRefusedTokenRevoked",
    NOT_MEMBER: "PublishRefusedNotMember",
    NO_SEND_GRANT: "PublishRefusedNoSendGrant",
}
EVENT_REASON_UNKNOWN = "PublishRefused"


def event_reason(reason: str) -> str:
    return EVENT_REASONS.get(reason, EVENT_REASON_UNKNOWN)
