"""Status conditions, Kubernetes-style (metav1.Condition) with kstatus semantics.

``Ready`` says the Livestream is serving what its spec asks; ``Reconciling`` is True while the
operator is converging (children rolling out, waiting on pods); ``Stalled`` is True when it
cannot converge without the user changing something (missing CallType, invalid combination).
Flux and Argo CD read exactly these.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal, Optional

from pydantic import Field

from .base import ApiModel

ConditionStatus = Literal["True", "False", "Unknown"]
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


class Condition(ApiModel):
    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str = Field(max_length=1024, description="CamelCase machine-readable reason")
    message: str = Field("", max_length=32768)
    last_transition_time: datetime
    observed_generation: Optional[int] = Field(None, ge=0)
