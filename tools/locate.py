"""locate: candidate regions for a named structure.

Two methods, one observation shape. With a configured text-prompted model (`tools.locate_model`,
a BiomedParse-class ONNX graph), captions it has a prompt for are answered by its mask; every
other caption falls back to the weight-free method: HU classes on CT, intensity percentiles
elsewhere. Either way connected components become numbered candidate boxes in the shown image's
pixels, and each candidate (and the payload) names the method that produced it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from tools.locate_model import LocateModel
from tools.masks import fill_holes
from tools.measurement import Unit
from tools.observation import Candidate, LocatePayload, ModelUse, Observation
from tools.onnx_runtime import RuntimeSettings
from tools.registry import INDEX_SCHEMA, Tool
from tools.render import draw_boxes
from tools.workspace import Workspace, WorkspaceImage

METHOD = "HU / intensity classes (weight-free)"
Found = tuple[Candidate, np.ndarray]  # a candidate and its pixels on the located image's grid


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
    model: str = ""  # locate model folder (manifest.json + ONNX); "" = weight-free only


def open_model(settings: LocateSettings, runtime: RuntimeSettings) -> LocateModel | None:
    """The configured model, opened and checked now (start-up), or None for weight-free."""
    return LocateModel(Path(settings.model), runtime) if settings.model else None


def locate(
    arguments: Mapping,
    workspace: Workspace,
    *,
    settings: LocateSettings,
    model: LocateModel | None = None,
) -> Observation:
    """Candidates come from the image as shown, so their boxes are in the policy's coordinates."""
    image = workspace.view(arguments["index"])
    classes = CT_CLASSES if image.frame.hounsfield else INTENSITY_CLASSES
    prompted, rest = _prompts_for(arguments["captions"], model)
    chosen, unsupported = _classes_for(rest, classes)
    methods = ([model.method] if prompted else []) + ([METHOD] if chosen else [])
    if not methods:
        wanted = ", ".join(map(repr, unsupported))
        return Observation(
            text=f"locate cannot find {wanted}; {_known(classes, model)}",
            payload=LocatePayload(_known_methods(model), (), tuple(unsupported)),
        )
    values = _values(image)
    found, scores = _model_answers(image, values, model, prompted, settings)
    if chosen:
        body = _body(image, values)
        for caption, tissue in chosen:
            found += _candidates(image, values, body, tissue, caption, settings)
    found = _ranked(found, methods[0], settings.max_candidates)
    candidates = [candidate for candidate, _ in found]
    boxes = [(tuple(c.bbox_2d), f"{c.rank} {c.tissue}") for c in candidates]
    shown = workspace.derive(image, "locate", pixels=draw_boxes(image.pixels, boxes))
    union = np.zeros(values.shape, bool)
    for _, inside in found:
        union |= inside
    payload = LocatePayload(" + ".join(methods), tuple(candidates), tuple(unsupported), mask=union)
    text = _describe(shown.index, image.index, candidates, unsupported, methods)
    if prompted:
        payload = replace(payload, model=ModelUse.of(model.record), scores=scores)
        listed = ", ".join(f"{p!r} {v:g}" for p, v in scores.items())
        text += f" Model scores: {listed} (threshold {model.manifest.thresholds.score:g})."
    return Observation(text=text, image=shown, payload=payload)


def _model_answers(image, values, model, prompted, settings) -> tuple[list[Found], dict]:
    """Candidates for every prompted caption, and each prompt's presence score."""
    candidates, scores = [], {}
    for caption, prompt in prompted:
        found, scores[prompt] = _model_candidates(image, values, model, caption, prompt, settings)
        candidates += found
    return candidates, scores


def _ranked(found: list[Found], first_method: str, limit: int) -> list[Found]:
    """The model's candidates first (by score), then the rest by area; numbered from 1."""
    found = sorted(
        found,
        key=lambda pair: (pair[0].method != first_method, -(pair[0].score or 0), -pair[0].area),
    )[:limit]
    return [(replace(c, rank=rank), inside) for rank, (c, inside) in enumerate(found, 1)]


def _prompts_for(captions, model: LocateModel | None) -> tuple[list[tuple[str, str]], list[str]]:
    """Captions the model has a prompt for, and the rest (for the weight-free classes)."""
    if model is None:
        return [], list(captions)
    prompted, rest = [], []
    for caption in captions:
        prompt = model.prompt_for(caption)
        if prompt is None:
            rest.append(caption)
        else:
            prompted.append((caption, prompt))
    return prompted, rest


def _known(classes, model: LocateModel | None) -> str:
    text = f"{METHOD} knows: {', '.join(c.name for c in classes)}"
    if model is not None:
        text += f"; {model.manifest.name} knows: {', '.join(model.manifest.prompts)}"
    return text + "."


def _known_methods(model: LocateModel | None) -> str:
    return METHOD if model is None else f"{model.method} + {METHOD}"


def _classes_for(captions, classes) -> tuple[list[tuple[str, TissueClass]], list[str]]:
    chosen, unsupported = [], []
    for caption in captions:
        tissue = next((c for c in classes if c.matches(caption.lower())), None)
        if tissue is None:
            unsupported.append(caption)
        else:
            chosen.append((caption, tissue))
    return chosen, unsupported


def _values(image: WorkspaceImage) -> np.ndarray:
    """Values on the shown grid: modality values for grey images, luminance for colour."""
    if image.frame.is_colour:
        return cv2.cvtColor(image.pixels, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return image.values()


def _body(image: WorkspaceImage, values: np.ndarray) -> np.ndarray:
    """The body region on the shown grid (air and table padding excluded)."""
    if image.frame.hounsfield:
        inside = (values > -500).astype(np.uint8)
    else:
        scaled = cv2.normalize(values, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        _, inside = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inside, connectivity=8)
    if count <= 1:
        return np.zeros(values.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return fill_holes(labels == largest)


def _candidates(image, values, body, tissue: TissueClass, caption: str, settings) -> list[Found]:
    low, high = tissue.low, tissue.high
    if tissue.relative:
        if not body.any():
            return []
        low, high = np.percentile(values[body], [tissue.low, tissue.high])
    found = ((values >= low) & (values <= high) & body).astype(np.uint8)
    found = cv2.morphologyEx(
        found, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    )
    return [
        (Candidate(caption, tissue.name, **region, method=METHOD), inside)
        for region, inside in _regions(image, values, found, settings)
    ]


def _model_candidates(image, values, model: LocateModel, caption, prompt, settings):
    """The model's mask for `prompt` on the shown image (none when its score is too low), score."""
    predicted = model.predict(image.pixels, prompt)
    thresholds = model.manifest.thresholds
    score = round(predicted.score, 3)
    if predicted.score < thresholds.score:
        return [], score
    found = (predicted.probability >= thresholds.mask).astype(np.uint8)
    candidates = [
        (
            Candidate(
                caption,
                prompt,
                **region,
                method=model.method,
                score=score,
                probability=round(float(predicted.probability[inside].mean()), 3),
            ),
            inside,
        )
        for region, inside in _regions(image, values, found, settings)
    ]
    return candidates, score


def _regions(image: WorkspaceImage, values, found: np.ndarray, settings):
    """Connected parts of `found` at least `min_area_mm2` large: a candidate's box, area and mean
    value, and its pixels."""
    spacing = image.frame.geometry.pixel_spacing
    row_mm, col_mm = image.to_source.mm_per_pixel(spacing or (1.0, 1.0))
    unit = Unit.SQUARE_MILLIMETRE if spacing else Unit.SQUARE_PIXEL
    count, labels, stats, _ = cv2.connectedComponentsWithStats(found, connectivity=8)
    for k in range(1, count):
        area = float(stats[k, cv2.CC_STAT_AREA]) * row_mm * col_mm
        if area < settings.min_area_mm2:
            continue
        x, y, w, h = (int(v) for v in stats[k, :4])
        inside = labels == k
        region = {
            "bbox_2d": (x, y, x + w, y + h),
            "area": round(area, 1),
            "area_unit": unit,
            "mean_value": round(float(values[inside].mean()), 1),
        }
        yield region, inside


def _describe(new_index, index, candidates: list[Candidate], unsupported, methods) -> str:
    if candidates:
        listed = "; ".join(
            f"{c.rank}) {c.tissue} box {list(c.bbox_2d)} area {c.area:g} {c.area_unit.value} "
            f"mean {c.mean_value:g}" + (f" score {c.score:g}" if c.score is not None else "")
            for c in candidates
        )
        text = f"Image #{new_index} marks candidates on image #{index}: {listed}."
    else:
        text = f"No candidate regions on image #{index} (image #{new_index})."
    text += f" Method: {' + '.join(methods)}."
    if unsupported:
        text += f" Not supported: {', '.join(map(repr, unsupported))}."
    return text


def tool(settings: LocateSettings, model: LocateModel | None = None) -> Tool:
    """The locate tool; with a model, its prompts are named in the description the policy reads."""
    description = (
        "Find candidate regions for named structures (e.g. 'hypodense lesion', 'fluid', 'bone'); "
        "returns the image with numbered candidate boxes."
    )
    if model is not None:
        description += f" A segmentation model knows: {', '.join(model.manifest.prompts)}."
    return Tool(
        name="locate",
        description=description,
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
        run=lambda arguments, workspace: locate(
            arguments, workspace, settings=settings, model=model
        ),
    )
