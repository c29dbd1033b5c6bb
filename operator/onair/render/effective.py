"""Effective settings: built-in defaults ⊕ CallType settings ⊕ Livestream override (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from onair.api.settings import (
    DEFAULT_SETTINGS,
    BackstageSettings,
    BroadcastingSettings,
    CallSettings,
    DvrSettings,
    IngestSettings,
    OriginSettings,
    RecordingSettings,
    RecordingStorage,
    ScreenshotSettings,
)
from onair.dicts import deep_merge


def effective_settings(calltype: Optional[CallSettings], override: Optional[CallSettings]) -> CallSettings:
    merged = DEFAULT_SETTINGS.model_dump(exclude_none=True)
    for layer in (calltype, override):
        if layer is not None:
            merged = deep_merge(merged, layer.model_dump(exclude_none=True))
    return CallSettings.model_validate(merged)


@dataclass(frozen=True)
class Sections:
    """The sections of effective settings, typed as present. On the wire (``CallSettings``) every
    section is optional; effective settings carry all of them, because ``DEFAULT_SETTINGS`` has
    each one and a merge cannot remove one."""

    backstage: BackstageSettings
    ingest: IngestSettings
    broadcasting: BroadcastingSettings
    dvr: DvrSettings
    recording: RecordingSettings
    screenshots: ScreenshotSettings
    origin: OriginSettings


def sections(effective: CallSettings) -> Sections:
    """``effective`` (from ``effective_settings``) by section; ValueError for settings that were not merged."""
    backstage, ingest, broadcasting = effective.backstage, effective.ingest, effective.broadcasting
    dvr, recording, screenshots = effective.dvr, effective.recording, effective.screenshots
    origin = effective.origin
    if (
        backstage is None
        or ingest is None
        or broadcasting is None
        or dvr is None
        or recording is None
        or screenshots is None
        or origin is None
    ):
        raise ValueError("settings without every section are not effective settings (see effective_settings)")
    return Sections(backstage, ingest, broadcasting, dvr, recording, screenshots, origin)


def recording_storage(effective: CallSettings) -> RecordingStorage:
    """Where recordings go: effective settings always say (``DEFAULT_SETTINGS`` has a storage)."""
    storage = sections(effective).recording.storage
    if storage is None:
        raise ValueError("effective settings without recording.storage (see effective_settings)")
    return storage


def origin_replicas(effective: CallSettings) -> int:
    """How many origin pods serve the stream (``origin.replicas``)."""
    return (effective.origin.replicas if effective.origin else None) or 1
