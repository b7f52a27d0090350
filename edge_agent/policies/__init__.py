"""Policies decide each step of a read. `protocol` is the embedded, weight-free default."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.policies.protocol import ProtocolPolicy
from imaging.errors import ConfigError

if TYPE_CHECKING:
    from edge_agent.agent import Policy
    from edge_agent.config import PolicySettings

AVAILABLE = ("protocol", "llama_cpp", "onnx_trt")


def make_policy(settings: PolicySettings, *, stream=None) -> Policy:
    """`stream`: where a model policy writes its reply as it is decoded (ignored otherwise)."""
    name = settings.name.replace("-", "_")
    if name == "protocol":
        return ProtocolPolicy(settings.protocol)
    if name == "llama_cpp":
        from edge_agent.policies.llama_cpp import LlamaCppPolicy

        return LlamaCppPolicy(settings.llama_cpp, stream)
    if name == "onnx_trt":
        from edge_agent.policies.onnx_trt import OnnxTrtPolicy

        return OnnxTrtPolicy(settings.onnx_trt, stream)
    raise ConfigError(
        f"policy {settings.name!r} is not available in this build; available: "
        f"{', '.join(AVAILABLE)}"
    )
