"""window: re-display a grey image with another window centre and width."""

from __future__ import annotations

from collections.abc import Mapping

from imaging.windowing import Window
from tools.errors import ToolError
from tools.observation import Observation, WindowPayload
from tools.registry import INDEX_SCHEMA, Tool
from tools.workspace import Workspace


def window(arguments: Mapping, workspace: Workspace) -> Observation:
    """Same view, new grey mapping, computed from modality values rather than shown pixels."""
    image = workspace.view(arguments["index"])
    if image.frame.is_colour:
        raise ToolError(f"image #{image.index} is colour; windowing applies to grey images")
    new_window = Window(float(arguments["center"]), float(arguments["width"]), "requested")
    shown = workspace.derive(image, "window", window=new_window, roi_px=image.roi_px)
    return Observation(
        text=f"Image #{shown.index} is image #{image.index} shown with window centre "
        f"{new_window.center:g}, width {new_window.width:g}.",
        image=shown,
        payload=WindowPayload(new_window),
    )


def tool() -> Tool:
    return Tool(
        name="window",
        description="Show a grey image with another window (centre and width in modality units, "
        "HU for CT): e.g. 40/400 soft tissue, -600/1500 lung, 400/1800 bone.",
        parameters={
            "type": "object",
            "properties": {
                "index": INDEX_SCHEMA,
                "center": {"type": "number"},
                "width": {"type": "number", "minimum": 1},
            },
            "required": ["index", "center", "width"],
            "additionalProperties": False,
        },
        run=window,
    )
