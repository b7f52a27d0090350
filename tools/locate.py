"""locate: candidate regions for a named structure. Weight-free method: HU classes on CT,
intensity percentiles elsewhere, connected components ranked by size."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from tools.masks import fill_holes
from tools.observation import Observation
from tools.registry import INDEX_SCHEMA, Tool
from tools.render import draw_boxes
from tools.workspace import Workspace, WorkspaceImage

METHOD = "HU / intensity classes (weight-free)"


@dataclass(frozen=True)
class TissueClass:
    """A value range that a caption can name; `relative` ranges are percentiles of the body."""

    name: str
    low: float
    high: float
    words: tuple[str, ...]
    relative: bool = False

    def matches(self, caption: str) -> bool:
        return any(re.search(rf"\b{re.escape(word)}\b", caption) for word in self.words)


# Order matters: the first class named in a caption wins ("hypodense mass" is hypodense).
CT_CLASSES = (
    TissueClass("hypodense", -20, 35, ("hypodense", "hypoattenuating", "low attenuation")),
    TissueClass(
        "hyperdense", 100, 300, ("hyperdense", "hyperattenuating", "contrast", "enhancing")
    ),
    TissueClass("air", -1100, -900, ("air", "gas", "pneumothorax", "emphysema")),
    TissueClass("fat", -190, -30, ("fat", "fatty", "adipose", "lipoma")),
    TissueClass("fluid", -10, 20, ("fluid", "cyst", "cystic", "effusion", "ascites", "water")),
    TissueClass(
        "bone",
        300,
        3000,
        ("bone", "bony", "calcification", "calcified", "vertebra", "rib", "skeleton"),
    ),
    TissueClass("soft tissue", 20, 80, ("soft tissue", "muscle", "mass", "organ")),
)
INTENSITY_CLASSES = (
    TissueClass(
        "hyperintense",
        90,
        100,
        ("hyperintense", "bright", "high signal", "hyperechoic"),
        relative=True,
    ),
    TissueClass(
        "hypointense", 0, 15, ("hypointense", "dark", "low signal", "hypoechoic"), relative=True
    ),
)


@dataclass(frozen=True)
class LocateSettings:
    max_candidates: int = 3
    min_area_mm2: float = 20.0


def locate(arguments: Mapping, workspace: Workspace, *, settings: LocateSettings) -> Observation:
    """Candidates come from the image as shown, so their boxes are in the policy's coordinates."""
    image = workspace.view(arguments["index"])
    classes = CT_CLASSES if image.frame.value_unit == "[hnsf'U]" else INTENSITY_CLASSES
    chosen, unsupported = _classes_for(arguments["captions"], classes)
    if not chosen:
        return Observation(
            text=f"locate cannot find {', '.join(map(repr, unsupported))} with {METHOD}; "
            f"it knows: {', '.join(c.name for c in classes)}.",
            payload={"method": METHOD, "candidates": [], "unsupported": unsupported},
        )
    values, body = _values_and_body(image)
    candidates = []
    for caption, tissue in chosen:
        candidates += _candidates(image, values, body, tissue, caption, settings)
    candidates.sort(key=lambda c: -c["area"])
    candidates = candidates[: settings.max_candidates]
    for rank, candidate in enumerate(candidates, 1):
        candidate["rank"] = rank
    boxes = [(tuple(c["bbox_2d"]), f"{c['rank']} {c['class']}") for c in candidates]
    shown = workspace.derive(image, "locate", pixels=draw_boxes(image.pixels, boxes))
    return Observation(
        text=_describe(shown.index, image.index, candidates, unsupported),
        image=shown,
        payload={"method": METHOD, "candidates": candidates, "unsupported": unsupported},
    )


def _classes_for(captions, classes) -> tuple[list[tuple[str, TissueClass]], list[str]]:
    chosen, unsupported = [], []
    for caption in captions:
        tissue = next((c for c in classes if c.matches(caption.lower())), None)
        if tissue is None:
            unsupported.append(caption)
        else:
            chosen.append((caption, tissue))
    return chosen, unsupported


def _values_and_body(image: WorkspaceImage) -> tuple[np.ndarray, np.ndarray]:
    """Values on the shown grid and the body region (air and table padding excluded)."""
    if image.frame.is_colour:
        values = cv2.cvtColor(image.pixels, cv2.COLOR_RGB2GRAY).astype(np.float32)
    else:
        values = image.values()
    if image.frame.value_unit == "[hnsf'U]":
        inside = (values > -500).astype(np.uint8)
    else:
        scaled = cv2.normalize(values, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        _, inside = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inside, connectivity=8)
    if count <= 1:
        return values, np.zeros(values.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return values, fill_holes(labels == largest)


def _candidates(image, values, body, tissue: TissueClass, caption: str, settings) -> list[dict]:
    low, high = tissue.low, tissue.high
    if tissue.relative:
        if not body.any():
            return []
        low, high = np.percentile(values[body], [tissue.low, tissue.high])
    found = ((values >= low) & (values <= high) & body).astype(np.uint8)
    found = cv2.morphologyEx(
        found, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    )
    spacing = image.frame.geometry.pixel_spacing
    row_mm, col_mm = image.to_source.mm_per_pixel(spacing or (1.0, 1.0))
    unit = "mm2" if spacing else "{pixel2}"
    count, labels, stats, _ = cv2.connectedComponentsWithStats(found, connectivity=8)
    out = []
    for k in range(1, count):
        area = float(stats[k, cv2.CC_STAT_AREA]) * row_mm * col_mm
        if area < settings.min_area_mm2:
            continue
        x, y, w, h = (int(v) for v in stats[k, :4])
        out.append(
            {
                "caption": caption,
                "class": tissue.name,
                "bbox_2d": [x, y, x + w, y + h],
                "area": round(area, 1),
                "area_unit": unit,
                "mean_value": round(float(values[labels == k].mean()), 1),
            }
        )
    return out


def _describe(new_index: int, index: int, candidates: list[dict], unsupported: list[str]) -> str:
    if candidates:
        listed = "; ".join(
            f"{c['rank']}) {c['class']} box {c['bbox_2d']} area {c['area']:g} {c['area_unit']} "
            f"mean {c['mean_value']:g}"
            for c in candidates
        )
        text = f"Image #{new_index} marks candidates on image #{index}: {listed}."
    else:
        text = f"No candidate regions on image #{index} (image #{new_index})."
    if unsupported:
        text += f" Not supported by {METHOD}: {', '.join(map(repr, unsupported))}."
    return text


def tool(settings: LocateSettings) -> Tool:
    return Tool(
        name="locate",
        description="Find candidate regions for named structures (e.g. 'hypodense lesion', "
        "'fluid', 'bone'); returns the image with numbered candidate boxes.",
        parameters={
            "type": "object",
            "properties": {
                "index": INDEX_SCHEMA,
                "captions": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": 200},
                    "minItems": 1,
                    "maxItems": 8,
                },
            },
            "required": ["index", "captions"],
            "additionalProperties": False,
        },
        run=lambda arguments, workspace: locate(arguments, workspace, settings=settings),
    )
