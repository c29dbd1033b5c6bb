"""Effective settings: built-in defaults ⊕ CallType settings ⊕ Livestream override (pure)."""
from __future__ import annotations

from typing import Optional

from onair.api.settings import DEFAULT_SETTINGS, CallSettings, RecordingStorage
from onair.dicts import deep_merge


def effective_settings(calltype: Optional[CallSettings], override: Optional[CallSettings]) -> CallSettings:
    merged = DEFAULT_SETTINGS.model_dump(exclude_none=True)
    for layer in (calltype, override):
        if layer is not None:
            merged = deep_merge(merged, layer.model_dump(exclude_none=True))
    return CallSettings.model_validate(merged)


def recording_storage(effective: CallSettings) -> RecordingStorage:
    """Where recordings go. Effective settings always carry it (``DEFAULT_SETTINGS`` has one and a
    merge cannot remove it); the fallback only satisfies the type of the wire model."""
    storage = effective.recording.storage if effective.recording else None
    if storage is None:
        assert DEFAULT_SETTINGS.recording is not None and DEFAULT_SETTINGS.recording.storage is not None
        return DEFAULT_SETTINGS.recording.storage
    return storage
