"""Display windows: which stored values map to black and white, per DICOM PS3.3 C.11.2.1.2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    name: str = ""

    def __post_init__(self) -> None:
        if not self.width >= 1:
            raise ValueError(f"window width must be >= 1, got {self.width}")

    def to_json(self) -> dict:
        return {"center": self.center, "width": self.width, "name": self.name}


# Presets a radiologist recognises; the first of each modality is its default.
PRESETS: dict[str, tuple[Window, ...]] = {
    "CT": (
        Window(40, 400, "soft tissue"),
        Window(-600, 1500, "lung"),
        Window(400, 1800, "bone"),
        Window(40, 80, "brain"),
        Window(60, 160, "liver"),
    ),
}


def preset(modality: str, name: str) -> Window:
    """Look up a named preset, so policies say 'soft tissue' instead of magic numbers."""
    for window in PRESETS.get(modality, ()):
        if window.name == name:
            return window
    raise KeyError(f"no window preset {name!r} for modality {modality!r}")


def auto_window(values: np.ndarray) -> Window:
    """The 1st-99th percentile, for images with neither a preset nor a window of their own."""
    low, high = np.percentile(values, [1, 99])
    return Window(float(low + high) / 2, max(float(high - low), 1.0), "auto")


def apply_window(values: np.ndarray, window: Window, *, invert: bool = False) -> np.ndarray:
    """Map modality values to uint8 grey levels with the DICOM linear VOI function."""
    c, w = window.center, window.width
    scaled = ((values - (c - 0.5)) / (w - 1) + 0.5) if w > 1 else (values > c - 0.5).astype(float)
    grey = np.clip(scaled, 0.0, 1.0) * 255.0
    if invert:
        grey = 255.0 - grey
    return np.rint(grey).astype(np.uint8)
