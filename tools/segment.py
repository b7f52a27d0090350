"""segment: the object inside a box, as a mask. Weight-free method: GrabCut seeded by the box."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from tools.errors import ToolError
from tools.masks import main_component, mask_box
from tools.observation import Observation
from tools.registry import BOX_SCHEMA, INDEX_SCHEMA, Tool
from tools.render import draw_boxes, draw_mask, to_rgb
from tools.workspace import Box, Workspace

METHOD = "grabcut (weight-free)"
FALLBACK = "otsu threshold (weight-free fallback)"
MIN_SHARE = 0.02  # of the box area: smaller parts are specks, not the object


def segment(arguments: Mapping, workspace: Workspace) -> Observation:
    """Segment on the image as shown (the policy's view), then carry the mask to the source grid."""
    image = workspace.view(arguments["index"])
    box = image.clip_box(arguments["bbox_2d"])
    method = METHOD
    here = grabcut(image.pixels, box)
    if not here.any():
        method, here = FALLBACK, otsu(image.pixels, box)
    mask = image.mask_to_source(here)
    if not mask.any():
        raise ToolError(f"no object found inside box {[round(v, 1) for v in box]}")
    pixels = draw_mask(draw_boxes(image.pixels, [(box, "")]), image.mask_here(mask))
    segmented = workspace.derive(image, "segment", pixels=pixels, mask=mask, roi_px=mask_box(mask))
    return Observation(
        text=f"Image #{segmented.index} outlines the object in box "
        f"{[round(v, 1) for v in box]} of image #{image.index} "
        f"({int(here.sum())} pixels as shown; method: {method}).",
        image=segmented,
        payload={"method": method, "bbox_2d": [round(v, 1) for v in box]},
    )


def grabcut(pixels: np.ndarray, box: Box, iterations: int = 5) -> np.ndarray:
    """Foreground inside `box`: the connected part nearest its centre; empty if none stands out."""
    h, w = pixels.shape[:2]
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
    if x2 - x1 < 3 or y2 - y1 < 3:
        raise ToolError(f"box {list(box)} is too small to segment (under 3 pixels a side)")
    labels = np.full((h, w), cv2.GC_BGD, np.uint8)
    labels[y1:y2, x1:x2] = cv2.GC_PR_FGD
    if (x2 - x1, y2 - y1) == (w, h):  # GrabCut needs some certain background
        labels[[0, -1], :] = labels[:, [0, -1]] = cv2.GC_BGD
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    try:
        cv2.grabCut(
            to_rgb(pixels), labels, None, background, foreground, iterations, cv2.GC_INIT_WITH_MASK
        )
    except cv2.error as exc:  # e.g. a box of one uniform grey
        raise ToolError(f"nothing to separate inside box {list(box)}: {exc.err}") from None
    found = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    return main_component(found, ((x1 + x2) / 2, (y1 + y2) / 2), MIN_SHARE * (x2 - x1) * (y2 - y1))


def otsu(pixels: np.ndarray, box: Box) -> np.ndarray:
    """Fallback when GrabCut finds nothing: the Otsu class at the box centre, inside the box."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    inside = np.ascontiguousarray(grey[y1:y2, x1:x2])
    _, bright = cv2.threshold(inside, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    centre = bright[bright.shape[0] // 2, bright.shape[1] // 2]
    found = np.zeros(grey.shape, np.uint8)
    found[y1:y2, x1:x2] = bright == centre
    return main_component(found, ((x1 + x2) / 2, (y1 + y2) / 2), MIN_SHARE * (x2 - x1) * (y2 - y1))


def tool() -> Tool:
    return Tool(
        name="segment",
        description="Outline the object inside a box; returns the image with the outline and "
        "keeps the mask for measure.",
        parameters={
            "type": "object",
            "properties": {"index": INDEX_SCHEMA, "bbox_2d": BOX_SCHEMA},
            "required": ["index", "bbox_2d"],
            "additionalProperties": False,
        },
        run=segment,
    )
