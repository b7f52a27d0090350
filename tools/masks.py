"""Small operations on binary masks shared by the tools."""

from __future__ import annotations

import cv2
import numpy as np


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """The mask's bounding box in continuous pixel coordinates."""
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def fill_holes(region: np.ndarray) -> np.ndarray:
    """The region plus everything it encloses."""
    outside = np.pad(~region.astype(bool), 1).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2) | region.astype(bool)


def main_component(found: np.ndarray, centre: tuple[float, float], min_area: float) -> np.ndarray:
    """The component nearest `centre` (ties to the larger); specks under `min_area` never win."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(found.astype(np.uint8), 8)
    sizes = stats[:, cv2.CC_STAT_AREA]
    kept = [k for k in range(1, count) if sizes[k] >= min_area]
    if not kept:
        return np.zeros(found.shape, bool)
    ys, xs = np.mgrid[: found.shape[0], : found.shape[1]]
    distance = np.hypot(xs + 0.5 - centre[0], ys + 0.5 - centre[1])
    nearest = np.full(count, np.inf)
    np.minimum.at(nearest, labels.ravel(), distance.ravel())
    return labels == min(kept, key=lambda k: (nearest[k], -sizes[k]))
