"""zoom_in: a box of an image, resampled from the source frame at a larger size."""

from __future__ import annotations

from collections.abc import Mapping

from tools.observation import Observation, ZoomPayload
from tools.registry import BOX_SCHEMA, INDEX_SCHEMA, Tool
from tools.workspace import Affine, Workspace


def zoom_in(arguments: Mapping, workspace: Workspace, *, size: int) -> Observation:
    """Crop from the source pixels (not the shown ones), so zooming twice loses nothing."""
    image = workspace.view(arguments["index"])
    box = image.clip_box(arguments["bbox_2d"])
    x1, y1, x2, y2 = image.to_source.map_box(box)
    scale = size / max(x2 - x1, y2 - y1)
    out_size = (max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale)))
    to_source = Affine.scale_then_shift((x2 - x1) / out_size[0], (y2 - y1) / out_size[1], x1, y1)
    zoomed = workspace.add(
        image.frame,
        to_source,
        out_size,
        image.window,
        tool="zoom_in",
        parent=image.index,
        roi_px=(x1, y1, x2, y2),
    )
    shown = [round(v, 1) for v in box]
    return Observation(
        text=f"Image #{zoomed.index} ({out_size[0]}x{out_size[1]}) is box {shown} of image "
        f"#{image.index}, {out_size[0] / (x2 - x1):.1f}x the source resolution.",
        image=zoomed,
        payload=ZoomPayload(tuple(shown), tuple(round(v, 2) for v in (x1, y1, x2, y2))),
    )


def tool(size: int) -> Tool:
    return Tool(
        name="zoom_in",
        description="Magnify a box of an image to look closer; returns the box as a new image.",
        parameters={
            "type": "object",
            "properties": {"index": INDEX_SCHEMA, "bbox_2d": BOX_SCHEMA},
            "required": ["index", "bbox_2d"],
            "additionalProperties": False,
        },
        run=lambda arguments, workspace: zoom_in(arguments, workspace, size=size),
    )
