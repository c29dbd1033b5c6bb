"""Base model shared by every API type: frozen, camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Frozen so a reconcile can never mutate what it read; camelCase because Kubernetes is."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def wire(self) -> dict:
        """The JSON-ready camelCase dict, without unset/None fields (never invent defaults on the wire)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
