"""The default toolbox: every visual tool, configured once; models are opened here, at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools import locate, measure, segment, video, window, zoom
from tools.locate import LocateSettings
from tools.onnx_runtime import RuntimeSettings
from tools.registry import Toolbox


@dataclass(frozen=True)
class ToolSettings:
    zoom_size: int = 512  # long side of a zoom_in output, in pixels
    video_size: int = 768  # long side of a get_frame image and width of a contact sheet
    locate: LocateSettings = field(default_factory=LocateSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)  # ONNX models' providers


def default_toolbox(settings: ToolSettings | None = None) -> Toolbox:
    """Every tool; the caller owns the result and closes it (it may hold ONNX sessions).

    Configured models are opened here, so a bad one is a ModelLoadError before any read."""
    settings = settings or ToolSettings()
    locate_model = locate.open_model(settings.locate, settings.runtime)
    return Toolbox(
        [
            zoom.tool(settings.zoom_size),
            window.tool(),
            segment.tool(),
            locate.tool(settings.locate, locate_model),
            measure.tool(),
            *video.tools(settings.video_size),
        ],
        resources=[m for m in (locate_model,) if m is not None],
    )
