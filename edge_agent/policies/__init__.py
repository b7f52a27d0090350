"""Policies decide each step of a read. `protocol` is the embedded, weight-free default."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.errors import ConfigError
from edge_agent.policies.protocol import ProtocolPolicy

if TYPE_CHECKING:
    from edge_agent.agent import Policy
    from edge_agent.config import PolicySettings

AVAILABLE = ("protocol",)


def make_policy(settings: PolicySettings) -> Policy:
    if settings.name == "protocol":
        return ProtocolPolicy(settings.protocol)
    raise ConfigError(
        f"policy {settings.name!r} is not available in this build; available: "
        f"{', '.join(AVAILABLE)}"
    )
