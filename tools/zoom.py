"""zoom_in: a box of an image, resampled from the source frame at a larger size, or, with
`scale`, the box cut from the image as it is shown (scale 1: the raw crop a model trained on
`img.crop(box)` expects), resampled from the source so zooming twice loses nothing."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tools.observation import Observation, ZoomPayload
from tools.registry import BOX_SCHEMA, INDEX_SCHEMA, Tool
from tools.workspace import Affine, Box, Workspace, WorkspaceImage

SCALE_SCHEMA = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": 16,
    "description": "output pixels per pixel of the named image (1: the box as shown, not "
    "resized); without it the box is magnified to the configured size",
}


def zoom_in(arguments: Mapping, workspace: Workspace, *, size: int) -> Observation:
    """Crop from the source pixels (not the shown ones), so zooming twice loses nothing."""
    image = workspace.view(arguments["index"])
    box = image.clip_box(arguments["bbox_2d"])
    if "scale" in arguments:
        # as upstream's `img.crop(box)`: the clamped box cast to whole pixels of the image
        box = tuple(float(math.floor(v)) for v in box)
        local = _resized(box, float(arguments["scale"]))
    else:
        local = _resized(box, size / max(box[2] - box[0], box[3] - box[1]))
    out_size, inner = local
    to_source = image.to_source.after(inner)
    source_box = to_source.map_box((0.0, 0.0, *map(float, out_size)))
    zoomed = _add(workspace, image, to_source, out_size, source_box)
    x1, x2 = source_box[0], source_box[2]
    shown = [round(v, 1) for v in box]
    return Observation(
        text=f"Image #{zoomed.index} ({out_size[0]}x{out_size[1]}) is box {shown} of image "
        f"#{image.index}, {out_size[0] / (x2 - x1):.1f}x the source resolution.",
        image=zoomed,
        payload=ZoomPayload(tuple(shown), tuple(round(v, 2) for v in source_box)),
    )


def _resized(box: Box, scale: float) -> tuple[tuple[int, int], Affine]:
    """The output size of `box` at `scale`, and the map from the output onto the named image."""
    x1, y1, x2, y2 = box
    out_size = (max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale)))
    return out_size, Affine.scale_then_shift(
        (x2 - x1) / out_size[0], (y2 - y1) / out_size[1], x1, y1
    )


def _add(workspace, image: WorkspaceImage, to_source: Affine, out_size, source_box: Box):
    return workspace.add(
        image.frame,
        to_source,
        out_size,
        image.window,
        tool="zoom_in",
        parent=image.index,
        roi_px=source_box,
    )


def tool(size: int) -> Tool:
    return Tool(
        name="zoom_in",
        description="Magnify a box of an image to look closer; returns the box as a new image.",
        parameters={
            "type": "object",
            "properties": {"index": INDEX_SCHEMA, "bbox_2d": BOX_SCHEMA, "scale": SCALE_SCHEMA},
            "required": ["index", "bbox_2d"],
            "additionalProperties": False,
        },
        run=lambda arguments, workspace: zoom_in(arguments, workspace, size=size),
    )
