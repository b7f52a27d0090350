"""One TOML file (`edge-agent.toml`) parsed into frozen dataclasses at start-up and checked once.

Every option has a default that works on a laptop; an unknown key or a wrong type is an error, never
a silent default."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from dicom_gateway.settings import GatewaySettings
from edge_agent.agent import Budget
from edge_agent.policies.llama_cpp import LlamaCppSettings
from edge_agent.policies.onnx_trt import OnnxTrtSettings
from edge_agent.policies.protocol import ProtocolSettings
from edge_agent.selection import DEFAULT_MODALITIES
from imaging.errors import ConfigError
from imaging.records import RecordError, from_plain
from tools.toolbox import ToolSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class ReadSettings:
    question: str = "Which regions stand out on this study, and how large are they?"
    modalities: tuple[str, ...] = DEFAULT_MODALITIES  # preference order for series selection
    key_frames: int = 3  # slices of a volume shown to the policy at the start
    overview_frames: int = 16  # frames of a cine or video in the overview sheet shown first
    shown_size: int = 0  # resize shown frames to fit this long side; 0 keeps the stored size

    def __post_init__(self) -> None:
        if self.key_frames < 1 or self.shown_size < 0 or not self.modalities:
            raise ValueError("key_frames >= 1, shown_size >= 0 and modalities non-empty")
        if not 2 <= self.overview_frames <= 64:
            raise ValueError("overview_frames must be between 2 and 64")


@dataclass(frozen=True)
class PolicySettings:
    name: str = "protocol"  # or "llama_cpp", "onnx_trt"
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    llama_cpp: LlamaCppSettings = field(default_factory=LlamaCppSettings)
    onnx_trt: OnnxTrtSettings = field(default_factory=OnnxTrtSettings)


@dataclass(frozen=True)
class ReportSettings:
    dicom: bool = True  # SR, SEG, Secondary Captures and Key Object Selection in OUT/dicom/


@dataclass(frozen=True)
class Config:
    read: ReadSettings = field(default_factory=ReadSettings)
    budget: Budget = field(default_factory=Budget)
    tools: ToolSettings = field(default_factory=ToolSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)


def load_config(path: Path | None) -> Config:
    """Defaults when no file is given; otherwise the file must exist and be fully valid."""
    if path is None:
        return Config()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    try:
        return from_plain(Config, data, "config")
    except RecordError as exc:
        raise ConfigError(f"config {path}: {exc}") from None
