"""Policies decide each step of a read. `protocol` is the embedded, weight-free default."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from edge_agent.policies.protocol import ProtocolPolicy
from imaging.errors import ConfigError

if TYPE_CHECKING:
    from edge_agent.agent import Policy
    from edge_agent.config import PolicySettings

# As the user types them (`--policy llama-cpp`); the config file's [policy] name may use either.
AVAILABLE = ("protocol", "llama-cpp", "onnx-trt")
# What each model policy imports, and the install extra that brings it.
NEEDS = {
    "llama_cpp": (("llama_cpp",), "llm"),
    "onnx_trt": (("onnxruntime", "tokenizers", "llguidance"), "onnx"),
}


def policy_key(name: str) -> str:
    """A policy's name as the code knows it: `llama-cpp` as typed is `llama_cpp`."""
    return name.replace("-", "_")


def make_policy(settings: PolicySettings, *, stream=None) -> Policy:
    """`stream`: where a model policy writes its reply as it is decoded (ignored otherwise)."""
    name = policy_key(settings.name)
    if name == "protocol":
        return ProtocolPolicy(settings.protocol)
    if name in NEEDS:
        check_installed(name)
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


def check_installed(name: str) -> None:
    """A model policy whose libraries are not installed is a configuration the user can mend
    (one line, exit 2), not a traceback in the middle of a read."""
    modules, extra = NEEDS[name]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"--policy {name.replace('_', '-')} needs {', '.join(missing)}, which is not "
            f"installed: install the '{extra}' extra (pip install 'edge-agent[{extra}]', or the "
            "bundle's wheelhouse)"
        )
