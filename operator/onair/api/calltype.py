"""CallType: cluster-scoped presets and role grants, like a StorageClass for livestreams."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .base import ApiModel
from .conditions import Condition
from .settings import CallSettings


# GetStream's capability names. Those with an effect in onair: EFFECTIVE_CAPABILITIES.
Capability = Literal[
    "join-backstage",
    "join-call",
    "read-call",
    "create-call",
    "update-call",
    "update-call-settings",
    "end-call",
    "send-audio",
    "send-video",
    "screenshare",
    "start-broadcast-call",
    "stop-broadcast-call",
    "start-record-call",
    "stop-record-call",
    "start-transcription-call",
    "stop-transcription-call",
    "mute-users",
    "remove-call-member",
    "update-call-member",
    "block-users",
    "pin-for-everyone",
]

EFFECTIVE_CAPABILITIES = (
    "join-backstage",
    "send-audio",
    "send-video",
    "start-broadcast-call",
    "stop-broadcast-call",
    "start-record-call",
    "stop-record-call",
    "update-call",
    "end-call",
)


class CallTypeSpec(ApiModel):
    settings: Optional[CallSettings] = Field(
        None,
        description=(
            "Presets for every Livestream of this type. Unset fields fall back to onair's built-in "
            "defaults; a Livestream's settingsOverride wins over these."
        ),
    )
    grants: Optional[dict[str, list[Capability]]] = Field(
        None,
        description=(
            "Role name → capabilities, e.g. host: [join-backstage, start-broadcast-call]. Members of a "
            "Livestream get the capabilities of their role. In effect: join-backstage (a playback token to "
            "watch in backstage); send-audio with send-video (publishing with a personal publish token, "
            "onair token --publish); for Kubernetes users in the group <prefix><role> (docs/capabilities.md): "
            "start-/stop-broadcast-call (spec.broadcasting), start-/stop-record-call (spec.recording), "
            "update-call (spec.phase backstage/live) and end-call (spec.phase ended). The others are "
            "accepted for GetStream compatibility and have no effect."
        ),
    )


class CallTypeStatus(ApiModel):
    observed_generation: Optional[int] = None
    livestreams: Optional[int] = Field(None, description="Livestreams that use this CallType")
    conditions: Optional[list[Condition]] = None


class CallType(ApiModel):
    api_version: Literal["onair.dev/v1alpha1"] = "onair.dev/v1alpha1"
    kind: Literal["CallType"] = "CallType"
    metadata: Optional[dict] = None
    spec: CallTypeSpec = CallTypeSpec()
    status: Optional[CallTypeStatus] = None
