"""The images in play during a read, each tied to its source frame by an exact affine map."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from imaging.frame import Frame
from imaging.windowing import Window, apply_window
from tools.errors import ToolError

if TYPE_CHECKING:
    from imaging.video import Timeline

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in continuous pixel coordinates


@dataclass(frozen=True)
class ShownSize:
    """How large a shown image is: its long side fits `max_side`, or its area `max_pixels` (what
    a vision-language model was trained on, e.g. Qwen2.5-VL's `max_pixels`); 0 keeps the size."""

    max_side: int = 0
    max_pixels: int = 0

    def __bool__(self) -> bool:
        return bool(self.max_side or self.max_pixels)

    def fit(self, cols: int, rows: int) -> tuple[int, int]:
        """(width, height) for a `cols` x `rows` image, its aspect kept. An area limit is filled
        (up or down), truncating as LLaMA-Factory's `image_max_pixels` resize does."""
        if self.max_side:
            scale = self.max_side / max(rows, cols)
            return max(1, round(cols * scale)), max(1, round(rows * scale))
        if self.max_pixels:
            scale = math.sqrt(self.max_pixels / (rows * cols))
            return max(1, math.floor(cols * scale)), max(1, math.floor(rows * scale))
        return cols, rows


@dataclass(frozen=True)
class Affine:
    """Maps an image's continuous pixel coordinates (pixel i spans [i, i+1)) to its source's."""

    matrix: tuple[float, float, float, float, float, float]  # [[a, b, c], [d, e, f]]

    @classmethod
    def identity(cls) -> Affine:
        return cls((1.0, 0.0, 0.0, 0.0, 1.0, 0.0))

    @classmethod
    def scale_then_shift(cls, scale_x: float, scale_y: float, x0: float, y0: float) -> Affine:
        """source = (x * scale_x + x0, y * scale_y + y0): the map of a crop resized by 1/scale."""
        return cls((scale_x, 0.0, x0, 0.0, scale_y, y0))

    @property
    def array(self) -> np.ndarray:
        return np.array([self.matrix[:3], self.matrix[3:], (0.0, 0.0, 1.0)])

    def apply(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        return pts @ self.array[:2, :2].T + self.array[:2, 2]

    def inverse(self) -> Affine:
        inv = np.linalg.inv(self.array)
        return Affine(tuple(float(v) for v in inv[:2].ravel()))

    def after(self, inner: Affine) -> Affine:
        """`inner` then this map: an image derived from one mapped by `self` (a crop of it)."""
        product = self.array @ inner.array
        return Affine(tuple(float(v) for v in product[:2].ravel()))

    def map_box(self, box: Box) -> Box:
        """The axis-aligned box around the mapped corners (exact for scale + shift maps)."""
        x1, y1, x2, y2 = box
        pts = self.apply([(x1, y1), (x2, y1), (x1, y2), (x2, y2)])
        return (
            float(pts[:, 0].min()),
            float(pts[:, 1].min()),
            float(pts[:, 0].max()),
            float(pts[:, 1].max()),
        )

    def mm_per_pixel(self, spacing: tuple[float, float]) -> tuple[float, float]:
        """(row, column) millimetres per pixel of this image, given the source's PixelSpacing."""
        a = self.array
        return (
            float(spacing[0] * np.hypot(a[0, 1], a[1, 1])),
            float(spacing[1] * np.hypot(a[0, 0], a[1, 0])),
        )


def sample(
    array: np.ndarray,
    to_source: Affine,
    size: tuple[int, int],
    *,
    nearest: bool = False,
    outside: float | None = None,
) -> np.ndarray:
    """Resample a source-grid array onto an image of `size` (w, h) mapped by `to_source`."""
    # cv2 addresses pixel centres at integer positions; shift by half a pixel on both sides.
    centred = (
        np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
        @ to_source.array
        @ np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    )
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    source = array.astype(np.float32) if array.dtype not in (np.uint8, np.float32) else array
    # Views never reach past the frame (boxes are clipped), but their edge pixels interpolate
    # with neighbours just outside: replicate the edge there. `outside` fills instead.
    border = cv2.BORDER_REPLICATE if outside is None else cv2.BORDER_CONSTANT
    return cv2.warpAffine(
        source,
        centred[:2],
        size,
        flags=flags,
        borderMode=border,
        borderValue=outside or 0.0,
    )


@dataclass(frozen=True, eq=False)
class WorkspaceImage:
    """One image the policy can see: pixels as shown plus provenance back to the source frame."""

    index: int
    pixels: np.ndarray  # uint8, h x w (grey) or h x w x 3 (RGB)
    frame: Frame
    to_source: Affine
    window: Window | None
    tool: str  # "shown" for originals, else the tool that made it
    parent: int | None = None
    mask: np.ndarray | None = None  # bool, in the source frame's pixel grid
    roi_px: Box | None = None  # region of interest in source pixels
    members: tuple[Frame, ...] = ()  # a contact sheet's frames in time order; `frame` is the first

    @property
    def times_s(self) -> tuple[float, ...]:
        """When the image's frames were shown, in seconds; empty for stills and volumes."""
        frames = self.members or (self.frame,)
        return tuple(f.time_s for f in frames if f.time_s is not None)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def source_roi(self) -> Box:
        if self.roi_px is not None:
            return self.roi_px
        return self.to_source.map_box((0, 0, *self.size))

    def clip_box(self, bbox: Sequence[float]) -> Box:
        """The part of `bbox` inside this image; a box that misses it or is inverted is an error."""
        x1, y1, x2, y2 = (float(v) for v in bbox)
        w, h = self.size
        if x2 <= x1 or y2 <= y1:
            raise ToolError(f"box {list(bbox)} is empty: need x1 < x2 and y1 < y2")
        clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h)))
        if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
            raise ToolError(
                f"box {list(bbox)} lies outside image #{self.index}, which is {w}x{h} pixels"
            )
        return clipped

    def values(self) -> np.ndarray:
        """Modality values (HU for CT) resampled onto this image's grid."""
        return sample(self.frame.values, self.to_source, self.size)

    def mask_here(self, mask: np.ndarray) -> np.ndarray:
        """A source-grid mask as it falls on this image."""
        return sample(mask.astype(np.uint8), self.to_source, self.size, nearest=True).astype(bool)

    def mask_to_source(self, mask: np.ndarray) -> np.ndarray:
        """A mask drawn on this image, resampled onto the source frame's grid."""
        rows, cols = self.frame.shape
        back = sample(mask.astype(np.float32), self.to_source.inverse(), (cols, rows), outside=0)
        return back >= 0.5


def render(frame: Frame, to_source: Affine, size: tuple[int, int], window: Window | None):
    """Pixels of a view onto `frame`: sampled from modality values, then windowed when grey."""
    sampled = sample(frame.values, to_source, size)
    if frame.is_colour:
        return sampled.astype(np.uint8)
    window = window or frame.default_window
    return apply_window(sampled, window, invert=frame.photometric == "MONOCHROME1")


class Workspace:
    """Index 0..n-1 are the shown originals; each tool output is appended with the next index.
    A read of a cine or video also holds its timeline, which the video tools sample."""

    def __init__(self, timeline: Timeline | None = None) -> None:
        self._images: list[WorkspaceImage] = []
        self.timeline = timeline

    def __len__(self) -> int:
        return len(self._images)

    def __iter__(self):
        return iter(self._images)

    def get(self, index: int) -> WorkspaceImage:
        if not 0 <= index < len(self._images):
            raise ToolError(
                f"there is no image #{index}; images #0..#{len(self._images) - 1} exist"
            )
        return self._images[index]

    def view(self, index: int) -> WorkspaceImage:
        """An image the pixel tools can work on: a view of one frame, not a contact sheet."""
        image = self.get(index)
        if image.members:
            first, last = image.times_s[0], image.times_s[-1]
            raise ToolError(
                f"image #{index} is a contact sheet of {len(image.members)} frames "
                f"({first:.2f}-{last:.2f} s); call get_frame with one of its times to work on a "
                "single frame"
            )
        return image

    def show(
        self,
        frame: Frame,
        *,
        max_side: int = 0,
        max_pixels: int = 0,
        tool: str = "shown",
    ) -> WorkspaceImage:
        """Add a whole frame (an original, or one a video tool fetched) in its default window,
        resized to fit `max_side` or `max_pixels` if set (see ShownSize)."""
        rows, cols = frame.shape
        size = ShownSize(max_side, max_pixels).fit(cols, rows)
        to_source = Affine.scale_then_shift(cols / size[0], rows / size[1], 0.0, 0.0)
        return self.add(frame, to_source, size, frame.default_window, tool=tool)

    def add(
        self,
        frame: Frame,
        to_source: Affine,
        size: tuple[int, int],
        window: Window | None,
        *,
        tool: str,
        parent: int | None = None,
        mask: np.ndarray | None = None,
        roi_px: Box | None = None,
        pixels: np.ndarray | None = None,
        members: tuple[Frame, ...] = (),
    ) -> WorkspaceImage:
        """Append a view of `frame`; `pixels` overrides the rendered view (e.g. an overlay)."""
        image = WorkspaceImage(
            index=len(self._images),
            pixels=render(frame, to_source, size, window) if pixels is None else pixels,
            frame=frame,
            to_source=to_source,
            window=window,
            tool=tool,
            parent=parent,
            mask=mask,
            roi_px=roi_px,
            members=members,
        )
        self._images.append(image)
        return image

    def derive(self, parent: WorkspaceImage, tool: str, **kwargs) -> WorkspaceImage:
        """Append an image on the same grid as `parent` (same map, window and size)."""
        kwargs.setdefault("window", parent.window)
        return self.add(
            parent.frame, parent.to_source, parent.size, tool=tool, parent=parent.index, **kwargs
        )
