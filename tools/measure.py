"""measure: area, long axis and value statistics of a mask or box, in source millimetres."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from tools.errors import ToolError
from tools.masks import mask_box
from tools.measurement import Measurement, Quantity, Unit
from tools.observation import MeasurePayload, Observation
from tools.registry import BOX_SCHEMA, INDEX_SCHEMA, Tool
from tools.render import draw_line, draw_mask
from tools.workspace import Workspace, WorkspaceImage


def measure(arguments: Mapping, workspace: Workspace) -> Observation:
    """Measure on the source grid, so a zoomed or resized view never changes the numbers."""
    image = workspace.view(arguments["index"])
    if "bbox_2d" in arguments:
        mask = _box_mask(image, arguments["bbox_2d"])
        region = "box"
    elif image.mask is not None:
        mask = image.mask
        region = f"mask of image #{image.index}"
    else:
        raise ToolError(
            f"image #{image.index} carries no mask; pass bbox_2d or measure a segment output"
        )
    if not mask.any():
        raise ToolError(f"the {region} covers no source pixels")
    result = region_measurements(
        mask,
        image.frame.values,
        image.frame.geometry.pixel_spacing,
        Unit.of_values(image.frame.hounsfield),
    )
    ends = image.to_source.inverse().apply(result.long_axis_px)
    pixels = draw_line(draw_mask(image.pixels, image.mask_here(mask)), ends[0], ends[1])
    measured = workspace.derive(image, "measure", pixels=pixels, mask=mask, roi_px=mask_box(mask))
    listed = "; ".join(m.describe() for m in result.measurements)
    return Observation(
        text=f"Measured the {region} (image #{measured.index}): {listed}.",
        image=measured,
        payload=MeasurePayload(result.measurements),
    )


@dataclass(frozen=True, eq=False)
class RegionMeasurements:
    """Area, long axis and value statistics of one source-grid mask."""

    measurements: tuple[Measurement, ...]
    long_axis_px: np.ndarray  # two (x, y) end points in source pixel coordinates


def region_measurements(
    mask: np.ndarray,
    values: np.ndarray,
    spacing: tuple[float, float] | None,
    value_unit: Unit,
) -> RegionMeasurements:
    """Without PixelSpacing the sizes are in pixels, and the unit says so."""
    row_mm, col_mm = spacing or (1.0, 1.0)
    length_unit, area_unit = (
        (Unit.MILLIMETRE, Unit.SQUARE_MILLIMETRE) if spacing else (Unit.PIXEL, Unit.SQUARE_PIXEL)
    )
    area = float(mask.sum()) * row_mm * col_mm
    length, ends = _long_axis(mask, row_mm, col_mm)
    measurements = [
        Measurement(Quantity.AREA, round(area, 2), area_unit),
        Measurement(Quantity.LONG_AXIS, round(length, 2), length_unit),
    ]
    if values.ndim == 2:
        inside = values[mask]
        measurements += [
            Measurement(Quantity.MEAN, round(float(inside.mean()), 1), value_unit),
            Measurement(Quantity.SD, round(float(inside.std()), 1), value_unit),
        ]
    return RegionMeasurements(tuple(measurements), ends)


def _long_axis(mask: np.ndarray, row_mm: float, col_mm: float) -> tuple[float, np.ndarray]:
    """Longest extent (max Feret diameter) in mm, counting each end pixel's own width."""
    ys, xs = np.nonzero(mask)
    hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32)).reshape(-1, 2)
    mm = hull * np.array([col_mm, row_mm])
    gaps = mm[:, None, :] - mm[None, :, :]
    distances = np.hypot(gaps[..., 0], gaps[..., 1])
    i, j = np.unravel_index(np.argmax(distances), distances.shape)
    centre_distance = float(distances[i, j])
    if centre_distance == 0:
        return max(row_mm, col_mm), np.array([hull[0] + 0.5, hull[0] + 0.5], dtype=float)
    ux, uy = np.abs(gaps[i, j]) / centre_distance
    # Pixel centres are half a pixel inside the region at each end.
    length = centre_distance + ux * col_mm + uy * row_mm
    return length, np.array([hull[i], hull[j]], dtype=float) + 0.5


def _box_mask(image: WorkspaceImage, bbox) -> np.ndarray:
    box = image.clip_box(bbox)
    here = np.zeros(image.pixels.shape[:2], dtype=np.uint8)
    x1, y1, x2, y2 = (round(v) for v in box)
    here[y1:y2, x1:x2] = 1
    return image.mask_to_source(here)


def tool() -> Tool:
    return Tool(
        name="measure",
        description="Measure a region in millimetres: area, long axis, mean and SD of the values "
        "(HU on CT). Give bbox_2d for a box, or only index to measure that image's mask "
        "(from segment).",
        parameters={
            "type": "object",
            "properties": {"index": INDEX_SCHEMA, "bbox_2d": BOX_SCHEMA},
            "required": ["index"],
            "additionalProperties": False,
        },
        run=measure,
    )
