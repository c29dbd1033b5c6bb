"""The onair API (group onair.dev, version v1alpha1). These models are the only source of the CRDs."""

from .meta import GROUP, VERSION
from .calltype import CallType, CallTypeSpec, CallTypeStatus
from .livestream import Livestream, LivestreamSpec, LivestreamStatus
from .recording import Recording, RecordingSpec, RecordingStatus
from .settings import DEFAULT_SETTINGS, CallSettings

__all__ = [
    "GROUP",
    "VERSION",
    "CallType",
    "CallTypeSpec",
    "CallTypeStatus",
    "Livestream",
    "LivestreamSpec",
    "LivestreamStatus",
    "Recording",
    "RecordingSpec",
    "RecordingStatus",
    "CallSettings",
    "DEFAULT_SETTINGS",
]
