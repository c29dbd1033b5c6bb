"""Effective settings: built-in defaults ⊕ CallType settings ⊕ Livestream override (pure)."""
from __future__ import annotations

from typing import Optional

from onair.api.settings import DEFAULT_SETTINGS, CallSettings
from onair.dicts import deep_merge


def effective_settings(calltype: Optional[CallSettings], override: Optional[CallSettings]) -> CallSettings:
    merged = DEFAULT_SETTINGS.model_dump(exclude_none=True)
    for layer in (calltype, override):
        if layer is not None:
            merged = deep_merge(merged, layer.model_dump(exclude_none=True))
    return CallSettings.model_validate(merged)
