"""The default toolbox: every visual tool, configured once; models are opened here, at start-up."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

from tools import locate, measure, segment, video, window, zoom
from tools.locate import LocateSettings
from tools.onnx_runtime import RuntimeSettings
from tools.registry import Toolbox
from tools.sam_onnx import SamOnnx
from tools.segment import SegmentSettings


@dataclass(frozen=True)
class ToolSettings:
    zoom_size: int = 512  # long side of a zoom_in output, in pixels
    video_size: int = 512  # long side of a get_frame image and width of a contact sheet
    locate: LocateSettings = field(default_factory=LocateSettings)
    segment: SegmentSettings = field(default_factory=SegmentSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)  # ONNX models' providers


def default_toolbox(settings: ToolSettings | None = None) -> Toolbox:
    """Every tool; the caller owns the result and closes it (it may hold ONNX sessions).

    Configured models are opened here, so a bad one is a ModelLoadError before any read."""
    settings = settings or ToolSettings()
    with ExitStack() as opened:  # a model that fails to open closes the ones opened before it
        segment_model = _segment_model(settings)
        if segment_model is not None:
            opened.callback(segment_model.close)
        locate_model = locate.open_model(settings.locate, settings.runtime)
        opened.pop_all()
    return Toolbox(
        [
            zoom.tool(settings.zoom_size),
            window.tool(),
            segment.tool(segment_model),
            locate.tool(settings.locate, locate_model),
            measure.tool(),
            *video.tools(settings.video_size),
        ],
        resources=[m for m in (segment_model, locate_model) if m is not None],
    )


def _segment_model(settings: ToolSettings) -> SamOnnx | None:
    """Opened (and hash-checked) now, so a missing or damaged model fails before any read."""
    if not settings.segment.model:
        return None
    return SamOnnx(settings.segment.model, settings.runtime, encoder=settings.segment.encoder)
