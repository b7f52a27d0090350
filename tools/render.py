"""Evidence rendering: boxes, outlines, lines and labels burned into a copy; PNG bytes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from imaging.frame import Frame
from tools.workspace import Affine, Box, render

RED, GREEN, YELLOW, CYAN = (255, 64, 64), (64, 255, 64), (255, 220, 0), (0, 220, 255)


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB) if pixels.ndim == 2 else pixels.copy()


def _thickness(image: np.ndarray) -> int:
    return max(1, round(max(image.shape[:2]) / 256))


def draw_boxes(pixels: np.ndarray, boxes: Iterable[tuple[Box, str]], colour=YELLOW) -> np.ndarray:
    """Boxes with labels that do not cover one another; `pixels` stays untouched."""
    boxes = list(boxes)
    image = to_rgb(pixels)
    t = _thickness(image)
    taken: list[tuple[int, int, int, int]] = []
    corners = [
        ((round(x1), round(y1)), (round(x2) - 1, round(y2) - 1)) for (x1, y1, x2, y2), _ in boxes
    ]
    for p1, p2 in corners:
        cv2.rectangle(image, p1, p2, colour, t)
    for (p1, p2), (_, label) in zip(corners, boxes, strict=True):  # labels over every box
        if label:
            (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.3 * t, t)
            x, y = label_origin((p1, p2), (w, h + base), image.shape[:2], taken, t)
            taken.append((x, y - h, x + w, y + base))
            cv2.rectangle(image, (x - 1, y - h - 1), (x + w, y + base), (0, 0, 0), cv2.FILLED)
            cv2.putText(image, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * t, colour, t)
    return image


def label_origin(box, size, shape, taken, t: int = 1) -> tuple[int, int]:
    """Where a label's baseline starts: above its box, else inside its top, else below it, the
    first place inside the image that covers no label drawn before; else the lowest free row."""
    (x1, y1), (_, y2) = box
    w, h = size
    rows, cols = shape
    x = min(max(0, x1 + t), max(0, cols - w))

    def free(y: int) -> bool:
        rect = (x, y - h, x + w, y)
        inside = rect[1] >= 0 and rect[3] <= rows
        return inside and not any(
            rect[0] < o[2] and o[0] < rect[2] and rect[1] < o[3] and o[1] < rect[3] for o in taken
        )

    for y in (y1 - 2 * t, y1 + h + 2 * t, y2 + h + 2 * t):
        if free(y):
            return x, y
    return x, next((y for y in range(h, rows + 1) if free(y)), max(h, y1 - 2 * t))


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


def frame_view(frame: Frame, max_side: int = 0) -> np.ndarray:
    """A whole frame as RGB, in its default window, scaled to fit `max_side` if given."""
    rows, cols = frame.shape
    scale = min(1.0, max_side / max(rows, cols)) if max_side else 1.0
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    to_source = Affine.scale_then_shift(cols / size[0], rows / size[1], 0.0, 0.0)
    return to_rgb(render(frame, to_source, size, None))


def contact_sheet(frames: Sequence[Frame], width: int = 768, gap: int = 4) -> np.ndarray:
    """Frames in a grid about `width` wide, each labelled with its time and frame number, time
    running row by row."""
    columns = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    tiles = [frame_view(frame, max(32, width // columns - gap)) for frame in frames]
    height, width = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    sheet = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 32, np.uint8)
    for number, (frame, image) in enumerate(zip(frames, tiles, strict=True)):
        y, x = (number // columns) * (height + gap), (number % columns) * (width + gap)
        sheet[y : y + image.shape[0], x : x + image.shape[1]] = image
        label = f"{frame.time_s or 0.0:.2f}s #{frame.ref.frame}"
        scale = max(0.35, width / 512)
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(sheet, (x, y), (x + w + 4, y + h + base + 4), (0, 0, 0), -1)
        cv2.putText(
            sheet,
            label,
            (x + 2, y + h + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            YELLOW,
            1,
            cv2.LINE_AA,
        )
    return sheet


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG of grey or RGB pixels (OpenCV wants BGR)."""
    bgr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an image of shape {pixels.shape}")
    return data.tobytes()
