"""One 2-D image and where it came from: the frame every tool, report and timeline works on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imaging.windowing import PRESETS, Window, auto_window


@dataclass(frozen=True)
class ImageRef:
    """What an SR or SEG cites: one frame of one SOP instance (frames count from 1, as in DICOM)."""

    sop_instance_uid: str
    frame: int
    sop_class_uid: str = ""
    series_instance_uid: str = ""
    study_instance_uid: str = ""


@dataclass(frozen=True)
class Geometry:
    """Where a frame's pixels lie in millimetres; spacing is (row, column) as in PixelSpacing."""

    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    # Patient Orientation as the file states it (where rows and columns run): a projection
    # image's (CR, DX) only orientation, it has no Image Orientation (Patient)
    stated: tuple[str, str] | None = None

    @property
    def normal(self) -> tuple[float, float, float] | None:
        """The row direction cross the column direction. Plain arithmetic: a study's load asks
        every slice for it, and numpy's cross product of two short vectors costs ~13 µs."""
        if self.orientation is None:
            return None
        (rx, ry, rz), (cx, cy, cz) = self.orientation[:3], self.orientation[3:]
        return (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)

    @property
    def directions(self) -> tuple[str, str] | None:
        """Where the rows and the columns run in the patient (R/L, A/P, H/F): the dominant axis
        of each direction cosine (an oblique slice gets its nearest), else the file's Patient
        Orientation; None when neither says."""
        if self.orientation is not None:
            return _letter(self.orientation[:3]), _letter(self.orientation[3:])
        return self.stated

    @property
    def edge_letters(self) -> tuple[str, str, str, str]:
        """The patient directions at the image's left, right, top and bottom edges, the markers
        a reader expects on a key image; empty without an orientation."""
        if self.directions is None:
            return ("", "", "", "")
        right, bottom = self.directions
        return (_OPPOSITE[right], right, _OPPOSITE[bottom], bottom)

    @property
    def slice_position_mm(self) -> float | None:
        """Where the slice lies along its normal (mm): what a reader calls the slice position,
        and the order of a volume's slices."""
        normal = self.normal
        if normal is None or self.position is None:
            return None
        return float(sum(n * p for n, p in zip(normal, self.position, strict=True)))


# DICOM patient axes (LPS): +x toward the patient's left, +y posterior, +z head.
_POSITIVE, _NEGATIVE = "LPH", "RAF"
_OPPOSITE = {
    **dict(zip(_POSITIVE, _NEGATIVE, strict=True)),
    **dict(zip(_NEGATIVE, _POSITIVE, strict=True)),
}


def stated_directions(value) -> tuple[str, str] | None:
    """Patient Orientation (0020,0020) as (rows, columns): each value's first letter, its main
    direction ("LP" runs mostly toward the left); None unless both are patient directions."""
    values = [] if not value or isinstance(value, str) else [str(v) for v in value]
    letters = tuple(v[:1].upper() for v in values)
    if len(letters) != 2 or not all(letter in _OPPOSITE for letter in letters):
        return None
    return letters[0], letters[1]


def _letter(cosines) -> str:
    axis = max(range(3), key=lambda i: abs(cosines[i]))
    return (_POSITIVE if cosines[axis] > 0 else _NEGATIVE)[axis]


PixelSource = Callable[[], np.ndarray]


class _Decoded:
    """`Frame.pixels`: the array given, or one decoded from the PixelSource given, on first use
    and then kept. A study's frames are made from headers alone; only the frames a read shows
    or a tool asks for are ever decoded."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, frame: Frame | None, owner: type | None = None) -> np.ndarray:
        if frame is None:  # a field without a default
            raise AttributeError(self._slot[1:])
        value = frame.__dict__[self._slot]
        if not isinstance(value, np.ndarray):
            value = value()
            frame.__dict__[self._slot] = value
        return value

    def __set__(self, frame: Frame, value: np.ndarray | PixelSource) -> None:
        frame.__dict__[self._slot] = value


@dataclass(frozen=True, eq=False)
class Frame:
    """One 2-D image: stored pixels plus what turns them into modality values and millimetres."""

    ref: ImageRef
    # rows x cols (grey) or rows x cols x 3 (RGB, uint8); a PixelSource is decoded on first use
    pixels: np.ndarray = _Decoded()  # type: ignore[assignment]
    geometry: Geometry
    modality: str
    photometric: str = "MONOCHROME2"
    slope: float = 1.0
    intercept: float = 0.0
    windows: tuple[Window, ...] = ()
    time_s: float | None = None
    instance_number: int | None = None

    @property
    def is_colour(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def values(self) -> np.ndarray:
        """Modality values (HU for CT) as float32; RGB frames are returned as stored."""
        if self.is_colour:
            return self.pixels
        return self.pixels.astype(np.float32) * np.float32(self.slope) + np.float32(self.intercept)

    @property
    def hounsfield(self) -> bool:
        """Whether `values` are Hounsfield units: a grey CT frame, rescaled by its slope and
        intercept. Everything else is unitless signal (MR, US, colour)."""
        return self.modality == "CT" and not self.is_colour

    @property
    def default_window(self) -> Window | None:
        """The file's own window first, then the modality preset, then the value range."""
        if self.is_colour:
            return None
        if self.windows:
            return self.windows[0]
        presets = PRESETS.get(self.modality)
        return presets[0] if presets else auto_window(self.values)
