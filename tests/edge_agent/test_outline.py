"""The SR outline of a mask: traced on the mask's neighbourhood only, it is the outline the whole
frame gives, point for point, wherever the mask lies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_agent.report.regions import UPSAMPLE, outline, polygon_area


def whole_frame_outline(mask: np.ndarray) -> np.ndarray:
    """The outline traced on the whole frame upsampled, as it was traced before."""
    up = cv2.resize(mask.astype(np.float32), None, fx=UPSAMPLE, fy=UPSAMPLE)
    contours, _ = cv2.findContours(
        (up >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    points = (max(contours, key=cv2.contourArea).reshape(-1, 2) + 0.5) / UPSAMPLE
    return np.vstack([points, points[:1]])


def masks() -> dict[str, np.ndarray]:
    y, x = np.mgrid[:96, :128]
    disc = (x - 60) ** 2 + (y - 40) ** 2 < 15**2
    two = disc | ((x > 100) & (y > 70))  # a second, smaller part: the disc is the largest
    corner = (x < 9) & (y < 7)  # touching two edges of the frame
    edge = (x > 110) & (y > 20) & (y < 60)  # touching the right edge
    return {"disc": disc, "two parts": two, "corner": corner, "edge": edge}


@pytest.mark.parametrize("name", list(masks()))
def test_the_outline_is_the_whole_frames_outline(name):
    mask = masks()[name]
    traced = outline(mask)
    np.testing.assert_array_equal(traced, whole_frame_outline(mask))
    assert traced.min() >= 0 and traced[:, 0].max() <= mask.shape[1]


def test_the_outline_area_matches_the_pixel_count():
    mask = masks()["disc"]
    assert polygon_area(outline(mask)) == pytest.approx(mask.sum(), rel=0.02)
