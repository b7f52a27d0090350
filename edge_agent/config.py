"""The agent's configuration: what a read needs, as frozen dataclasses checked once.

These are the agent's tables of `edge-agent.toml`; the file itself (these plus [gateway]) is read by
the CLI (`edge_agent/cli/config.py`). Every option has a default that works on a laptop; an unknown
key or a wrong type is an error, never a silent default."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.agent import Budget
from edge_agent.policies.model_settings import LlamaCppSettings, OnnxTrtSettings
from edge_agent.policies.protocol import ProtocolSettings
from edge_agent.selection import DEFAULT_MODALITIES
from tools.toolbox import ToolSettings


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
    pdf: bool = False  # the gateway prints report.pdf per read (needs Chromium)
    pdf_dicom: bool = False  # and sends it as an Encapsulated PDF with the other results

    def __post_init__(self) -> None:
        if self.pdf_dicom and not (self.pdf and self.dicom):
            raise ValueError("pdf_dicom = true needs pdf = true and dicom = true")


@dataclass(frozen=True)
class Config:
    """What one read needs; the CLI's `FileConfig` adds the gateway's table to it."""

    read: ReadSettings = field(default_factory=ReadSettings)
    budget: Budget = field(default_factory=Budget)
    tools: ToolSettings = field(default_factory=ToolSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    report: ReportSettings = field(default_factory=ReportSettings)
