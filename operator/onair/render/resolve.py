"""Can this Livestream be rendered at all? The checks the controller runs before ``render_children``.

A problem here is something only the user can fix (a CallType that does not exist, a spec the
models reject). The controller reports it as ``Stalled=True``/``Ready=False`` with the problem's
reason and message (``onair.render.status.livestream_status(problem=...)``), leaves the existing
children untouched (a deleted CallType must not take a running stream down) and retries when
CallTypes change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from pydantic import ValidationError

from onair.api.calltype import CallType
from onair.api.livestream import LivestreamSpec
from onair.api.settings import CallSettings
from onair.render.effective import effective_settings

CALLTYPE_NOT_FOUND = "CallTypeNotFound"
INVALID_SPEC = "InvalidSpec"
INVALID_RECORDING_STORAGE = "InvalidRecordingStorage"


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass(frozen=True)
class Resolved:
    spec: Optional[LivestreamSpec]
    effective: Optional[CallSettings]
    problem: Optional[Problem] = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _short(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]]
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more


def resolve(livestream: Mapping, calltype: Optional[CallType]) -> Resolved:
    """Parse the spec and merge settings; ``calltype`` is None when ``spec.callType`` was not found."""
    try:
        spec = LivestreamSpec.model_validate(livestream.get("spec") or {})
    except ValidationError as exc:
        return Resolved(None, None, Problem(INVALID_SPEC, f"spec is invalid: {_short(exc)}"))
    if calltype is None:
        return Resolved(
            spec,
            None,
            Problem(
                CALLTYPE_NOT_FOUND,
                f"CallType {spec.call_type!r} does not exist; create it (kubectl get calltypes lists them)",
            ),
        )
    effective = effective_settings(calltype.spec.settings, spec.settings_override)
    storage = recording_storage_problem(effective)
    if storage is not None:
        return Resolved(spec, effective, Problem(INVALID_RECORDING_STORAGE, storage))
    return Resolved(spec, effective)


def recording_storage_problem(effective: CallSettings) -> Optional[str]:
    """What ``recording.storage.s3`` lacks once CallType and override are merged (each may name only
    some of its fields, so the API server cannot require them); None when complete or unset."""
    recording = effective.recording
    storage = recording.storage if recording else None
    s3 = storage.s3 if storage else None
    if recording is None or s3 is None or recording.mode == "disabled":
        return None
    missing = [
        name
        for name, value in (
            ("endpoint", s3.endpoint),
            ("bucket", s3.bucket),
            ("credentialsSecret", s3.credentials_secret),
        )
        if not value
    ]
    if not missing:
        return None
    return (
        f"recording.storage.s3 needs {', '.join(missing)} (missing from both the CallType's settings and the "
        "Livestream's settingsOverride): set "
        + ", ".join(f"recording.storage.s3.{name}" for name in missing)
        + " in either, or remove recording.storage.s3 to keep recordings on the volume only"
    )
