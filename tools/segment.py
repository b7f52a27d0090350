"""segment: the object inside a box, as a mask.

With a configured model (a SAM-class ONNX export) the image is embedded once per read and each box
is decoded against that embedding; without one, the weight-free method: GrabCut seeded by the box.
The observation names the method that made the mask."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from tools.errors import ToolError
from tools.masks import main_component, mask_box
from tools.observation import ModelUse, Observation, SegmentPayload
from tools.registry import BOX_SCHEMA, INDEX_SCHEMA, Tool
from tools.render import draw_boxes, draw_mask, to_rgb
from tools.sam_onnx import ENCODERS, Embedding, SamOnnx
from tools.workspace import Box, Workspace, WorkspaceImage

METHOD = "grabcut (weight-free)"
FALLBACK = "otsu threshold (weight-free fallback: GrabCut found no foreground)"
MIN_SHARE = 0.02  # of the box area: smaller parts are specks, not the object
CACHED_IMAGES = 8  # embeddings kept per read (about 16 MB each for SAM2 at 1024)


@dataclass(frozen=True)
class SegmentSettings:
    model: str = ""  # folder from `edge-agent export onnx sam2`; "" = weight-free GrabCut
    encoder: str = "fp32"  # "int8": the dynamically quantized encoder of the same export

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {self.encoder!r}")


class ModelSegmenter:
    """Box → mask with a SAM-class model; each workspace image is embedded once per read."""

    def __init__(self, model: SamOnnx) -> None:
        self.model = model
        # One cache per read's workspace, gone with it: a long-lived toolbox never grows.
        self._cache: weakref.WeakKeyDictionary[Workspace, dict[int, Embedding]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, image: WorkspaceImage, box: Box, workspace: Workspace):
        """The mask on the image as shown, and the model's own estimate of its IoU."""
        masks, scores = self.model.masks(self._embedding(image, workspace), np.array([box]))
        return masks[0], float(scores[0])

    def embedded(self, workspace: Workspace) -> dict[int, Embedding]:
        """The embeddings kept for a read, by workspace index."""
        return dict(self._cache.get(workspace, {}))

    def _embedding(self, image: WorkspaceImage, workspace: Workspace) -> Embedding:
        cache = self._cache.setdefault(workspace, {})
        if image.index not in cache:
            if len(cache) >= CACHED_IMAGES:
                del cache[next(iter(cache))]  # the oldest
            cache[image.index] = self.model.embed(image.pixels)
        return cache[image.index]


def segment(
    arguments: Mapping, workspace: Workspace, model: ModelSegmenter | None = None
) -> Observation:
    """Segment on the image as shown (the policy's view), then carry the mask to the source grid."""
    image = workspace.view(arguments["index"])
    box = image.clip_box(arguments["bbox_2d"])
    score, used = None, None
    if model is not None:
        here, score = model(image, box, workspace)
        method, score, used = (
            model.model.method,
            round(score, 3),
            ModelUse.of(model.model.provenance),
        )
    else:
        method, here = METHOD, grabcut(image.pixels, box)
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
        payload=SegmentPayload(method, tuple(round(v, 1) for v in box), score, used),
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
    # GrabCut starts its colour models from OpenCV's global random state: seeded here (0 is the
    # state a fresh process starts in), the same box gives the same mask whatever ran before.
    cv2.setRNGSeed(0)
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


def tool(model: SamOnnx | None = None) -> Tool:
    """The segment tool; with `model` it decodes boxes with it (the caller owns and closes it)."""
    segmenter = ModelSegmenter(model) if model is not None else None
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
        run=lambda arguments, workspace: segment(arguments, workspace, segmenter),
    )
