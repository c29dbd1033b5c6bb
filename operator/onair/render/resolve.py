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
        return Resolved(spec, None, Problem(
            CALLTYPE_NOT_FOUND,
            f"CallType {spec.call_type!r} does not exist; create it (kubectl get calltypes lists them)"))
    return Resolved(spec, effective_settings(calltype.spec.settings, spec.settings_override))
