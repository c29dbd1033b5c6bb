"""Effective settings: built-in defaults ⊕ CallType settings ⊕ Livestream override (pure)."""
from __future__ import annotations

from typing import Any, Optional

from onair.api.settings import DEFAULT_SETTINGS, CallSettings


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            # Lists replace, they do not concatenate: an override of qualityTracks is the new ladder.
            out[key] = value
    return out


def effective_settings(calltype: Optional[CallSettings], override: Optional[CallSettings]) -> CallSettings:
    merged = DEFAULT_SETTINGS.model_dump(exclude_none=True)
    for layer in (calltype, override):
        if layer is not None:
            merged = _deep_merge(merged, layer.model_dump(exclude_none=True))
    return CallSettings.model_validate(merged)
