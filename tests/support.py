"""Helpers for tests: pydicom's bundled files, the installed CLI, synthetic phantoms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_file

from edge_agent.study import Frame, Geometry, ImageRef


def bundled(name: str) -> Path:
    """A file that ships inside the pydicom wheel (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name} is not bundled with this pydicom")
    return Path(path)


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed `edge-agent` console script, as a user runs it."""
    script = Path(sys.executable).parent / "edge-agent"
    return subprocess.run(
        [str(script), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def phantom_frame(
    values: np.ndarray, spacing: tuple[float, float] | None = (0.5, 0.5), modality: str = "CT"
) -> Frame:
    """A synthetic grey frame whose stored values are already modality values."""
    return Frame(
        ref=ImageRef("1.2.3.4", 1, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.2", "1.2.3.1"),
        pixels=values.astype(np.int16),
        geometry=Geometry(pixel_spacing=spacing),
        modality=modality,
    )


def disc(shape, centre, radius_mm, spacing, inside, outside) -> np.ndarray:
    """A disc that is round in millimetres (elliptic in pixels when spacing is anisotropic)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    dy = (rows + 0.5 - centre[1]) * spacing[0]
    dx = (cols + 0.5 - centre[0]) * spacing[1]
    return np.where(np.hypot(dx, dy) <= radius_mm, inside, outside)
