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
GRABCUT_PIXELS = 256 * 256  # the most pixels handed to GrabCut, whatever the box
CONTEXT = 0.5  # background around the box GrabCut learns from, as a fraction of its long side
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
    """Foreground inside `box`: the connected part nearest its centre; empty if none stands out.

    GrabCut's cost grows with every pixel it is handed, so it runs on the box and its context
    (half the box's long side around it, as the protocol zooms) resampled to at most
    GRABCUT_PIXELS; the mask comes back to full resolution by interpolation."""
    h, w = pixels.shape[:2]
    x1, y1, x2, y2 = _pixel_box(box, (w, h))
    if x2 - x1 < 3 or y2 - y1 < 3:
        raise ToolError(f"box {list(box)} is too small to segment (under 3 pixels a side)")
    margin = round(CONTEXT * max(x2 - x1, y2 - y1))
    cx1, cy1 = max(x1 - margin, 0), max(y1 - margin, 0)
    cx2, cy2 = min(x2 + margin, w), min(y2 + margin, h)
    crop_w, crop_h = cx2 - cx1, cy2 - cy1
    scale = min(1.0, (GRABCUT_PIXELS / (crop_w * crop_h)) ** 0.5)
    size = (max(3, int(crop_w * scale)), max(3, int(crop_h * scale)))
    fx, fy = size[0] / crop_w, size[1] / crop_h
    # Bilinear, not area, resampling: it keeps the grey-level spread GrabCut's colour models
    # learn from; averaging smooths it away and small objects then vanish at coarse scales.
    work = cv2.resize(to_rgb(pixels[cy1:cy2, cx1:cx2]), size, interpolation=cv2.INTER_LINEAR)
    labels = np.full(size[::-1], cv2.GC_BGD, np.uint8)
    inner = (
        slice(int(np.floor((y1 - cy1) * fy)), int(np.ceil((y2 - cy1) * fy))),
        slice(int(np.floor((x1 - cx1) * fx)), int(np.ceil((x2 - cx1) * fx))),
    )
    labels[inner] = cv2.GC_PR_FGD
    if labels.all():  # the box is the whole image: GrabCut needs some certain background
        labels[[0, -1], :] = labels[:, [0, -1]] = cv2.GC_BGD
    _run_grabcut(work, labels, iterations, box)
    found = _foreground(labels).astype(np.float32)
    back = cv2.resize(found, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR) >= 0.5
    return _placed(back[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1], (x1, y1), (h, w))


def _run_grabcut(image: np.ndarray, labels: np.ndarray, iterations: int, box: Box) -> None:
    """cv2.grabCut on `labels` in place, from a fixed random state: the labels of one call of
    `iterations`, run as its first iteration and then the others.

    A first iteration that leaves no foreground ends it: the next would learn its foreground
    colour model from no pixels, an empty model that scores every pixel background, so the rest
    could only repeat these labels (the weight-free fallback takes over)."""
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    # GrabCut starts its colour models from OpenCV's global random state: seeded here (0 is the
    # state a fresh process starts in), the same box gives the same mask whatever ran before.
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(image, labels, None, background, foreground, 1, cv2.GC_INIT_WITH_MASK)
        if _foreground(labels).any():  # on from the colour models the first one left
            cv2.grabCut(image, labels, None, background, foreground, iterations - 1, cv2.GC_EVAL)
    except cv2.error as exc:  # e.g. a box of one uniform grey
        raise ToolError(f"nothing to separate inside box {list(box)}: {exc.err}") from None


def _foreground(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _pixel_box(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The whole pixels a box touches, inside an image of `size` (width, height)."""
    x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    return x1, y1, min(int(np.ceil(box[2])), size[0]), min(int(np.ceil(box[3])), size[1])


def otsu(pixels: np.ndarray, box: Box) -> np.ndarray:
    """Fallback when GrabCut finds nothing: the Otsu class at the box centre, inside the box."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    x1, y1, x2, y2 = _pixel_box(box, grey.shape[::-1])
    inside = np.ascontiguousarray(grey[y1:y2, x1:x2])
    _, bright = cv2.threshold(inside, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    centre = bright[bright.shape[0] // 2, bright.shape[1] // 2]
    return _placed(bright == centre, (x1, y1), grey.shape)


def _placed(found: np.ndarray, corner: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """The main part of what was found inside a box, on the whole image's grid."""
    h, w = found.shape
    mask = np.zeros(shape[:2], bool)
    part = main_component(found.astype(np.uint8), (w / 2, h / 2), MIN_SHARE * w * h)
    mask[corner[1] : corner[1] + h, corner[0] : corner[0] + w] = part
    return mask


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
