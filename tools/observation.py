"""What a tool returns: text for the policy, an optional new image, and a JSON-ready payload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tools.workspace import WorkspaceImage


@dataclass(frozen=True)
class Observation:
    text: str
    image: WorkspaceImage | None = None
    payload: Mapping = field(default_factory=dict)
    error: bool = False

    @classmethod
    def failure(cls, message: str) -> Observation:
        return cls(text=message, error=True)
