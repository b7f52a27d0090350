"""Evidence rendering: boxes, outlines, lines and labels burned into a copy; PNG bytes."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from tools.workspace import Box

RED, GREEN, YELLOW, CYAN = (255, 64, 64), (64, 255, 64), (255, 220, 0), (0, 220, 255)


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB) if pixels.ndim == 2 else pixels.copy()


def _thickness(image: np.ndarray) -> int:
    return max(1, round(max(image.shape[:2]) / 256))


def draw_boxes(pixels: np.ndarray, boxes: Iterable[tuple[Box, str]], colour=YELLOW) -> np.ndarray:
    """Boxes with labels; `pixels` stays untouched."""
    image = to_rgb(pixels)
    t = _thickness(image)
    for (x1, y1, x2, y2), label in boxes:
        p1, p2 = (round(x1), round(y1)), (round(x2) - 1, round(y2) - 1)
        cv2.rectangle(image, p1, p2, colour, t)
        if label:
            origin = (p1[0] + t, max(p1[1] - 2 * t, 8 * t))
            cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.3 * t, colour, t)
    return image


def draw_mask(pixels: np.ndarray, mask: np.ndarray, colour=GREEN) -> np.ndarray:
    """The mask's outline; the inside stays readable."""
    image = to_rgb(pixels)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(image, contours, -1, colour, _thickness(image))
    return image


def draw_line(pixels: np.ndarray, start, end, colour=CYAN) -> np.ndarray:
    image = to_rgb(pixels)
    p1 = (round(start[0]), round(start[1]))
    p2 = (round(end[0]), round(end[1]))
    cv2.line(image, p1, p2, colour, _thickness(image))
    return image


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG of grey or RGB pixels (OpenCV wants BGR)."""
    bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an image of shape {pixels.shape}")
    return data.tobytes()
