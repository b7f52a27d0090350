"""The built-in lesion-insertion set: real CT anatomy with synthetic lesions of known place,
diameter and contrast, so detection and measurement error in mm are known exactly.

The source is a contrast-enhanced abdominal CT slice (512², 0.86 mm pixels) from `pydicom-data`
(found through pydicom's data manager, never downloaded at run time). Each lesion is a round,
hypodense disc added to the liver as an offset in HU, so the scan's own noise and texture stay;
its edge is partial-volume blended over one pixel. Positions, sizes and contrasts are drawn from a
seeded generator: the same seed writes the same files."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from edge_agent.evaluation.sources import SourceError

log = logging.getLogger(__name__)

SOURCE = "explicit_VR-UN.dcm"  # pydicom-data: CT, pancreas protocol, portal venous phase
LIVER = (160, 225, 180, 265)  # x1, y1, x2, y2 (source pixels) where lesion centres may fall
DIAMETERS_MM = (25.0, 20.0, 15.0, 12.0, 10.0, 8.0)
QUESTION = "Is there a hypodense lesion larger than 10 mm? How large is it?"
TOLERANCE_MM = 2.5  # about three pixels of this scan: the outline's own quantisation


@dataclass(frozen=True)
class Lesion:
    id: str
    centre_px: tuple[float, float]  # x, y in source pixels
    diameter_mm: float
    contrast_hu: float  # added inside the lesion (negative: hypodense)

    def box(self, spacing: tuple[float, float]) -> tuple[float, float, float, float]:
        """The lesion's bounding box in source pixels (spacing: row, column mm)."""
        half_x, half_y = self.diameter_mm / 2 / spacing[1], self.diameter_mm / 2 / spacing[0]
        x, y = self.centre_px
        return (
            round(x - half_x, 2),
            round(y - half_y, 2),
            round(x + half_x, 2),
            round(y + half_y, 2),
        )


def lesions(seed: int = 16, count: int = len(DIAMETERS_MM)) -> tuple[Lesion, ...]:
    """`count` lesions, sizes cycling through DIAMETERS_MM; places and contrasts from `seed`."""
    rng = np.random.default_rng(seed)
    made = []
    for i in range(count):
        x = float(rng.uniform(LIVER[0], LIVER[2]))
        y = float(rng.uniform(LIVER[1], LIVER[3]))
        made.append(
            Lesion(
                id=f"ct-lesion-{i + 1:02d}",
                centre_px=(round(x, 1), round(y, 1)),
                diameter_mm=DIAMETERS_MM[i % len(DIAMETERS_MM)],
                contrast_hu=round(float(rng.uniform(-90.0, -75.0)), 1),
            )
        )
    return tuple(made)


def build_insertion_set(folder: Path, seed: int = 16, count: int = len(DIAMETERS_MM)) -> Path:
    """Write one single-slice study per lesion and `cases.jsonl` (a site case list) into
    `folder`; returns the case file."""
    source = source_file()
    template = pydicom.dcmread(source)
    template.decompress()
    spacing = tuple(float(v) for v in template.PixelSpacing)
    slope = float(getattr(template, "RescaleSlope", 1.0))
    intercept = float(getattr(template, "RescaleIntercept", 0.0))
    stored = template.pixel_array.astype(np.float64)
    rows = []
    for lesion in lesions(seed, count):
        values = (
            stored * slope
            + intercept
            + lesion.contrast_hu * _profile(lesion, stored.shape, spacing)
        )
        _write_study(
            template, values, slope, intercept, folder / "studies" / lesion.id, lesion, seed
        )
        rows.append(_row(lesion, spacing))
    cases = folder / "cases.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    cases.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (folder / "lesions.json").write_text(
        json.dumps(
            {"source": SOURCE, "seed": seed, "lesions": [asdict(x) for x in lesions(seed, count)]},
            indent=2,
        ),
        encoding="utf-8",
    )
    return cases


def source_file() -> Path:
    found = get_testdata_file(SOURCE, download=False)
    if found is None:
        raise SourceError(
            f"{SOURCE} is not installed: the insertion set needs pydicom-data "
            "(pip install 'edge-agent[eval]')"
        )
    return Path(found)


def _profile(lesion: Lesion, shape, spacing) -> np.ndarray:
    """1 inside the disc, 0 outside, linear over one pixel at the edge (partial volume)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    x, y = lesion.centre_px
    distance = np.hypot((cols + 0.5 - x) * spacing[1], (rows + 0.5 - y) * spacing[0])
    return np.clip((lesion.diameter_mm / 2 - distance) / min(spacing) + 0.5, 0.0, 1.0)


def _write_study(template, values, slope, intercept, folder: Path, lesion: Lesion, seed) -> None:
    ds = template.copy()
    dtype = template.pixel_array.dtype
    info = np.iinfo(dtype)
    raw = np.clip(np.round((values - intercept) / slope), info.min, info.max).astype(dtype)
    ds.PixelData = raw.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    entropy = [SOURCE, str(seed), lesion.id]
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*entropy, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*entropy, "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*entropy, "instance"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = f"edge-agent insertion set: {lesion.diameter_mm:g} mm lesion"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / "slice.dcm", enforce_file_format=True)


def _row(lesion: Lesion, spacing) -> dict:
    return {
        "id": lesion.id,
        "study": f"studies/{lesion.id}",
        "question": QUESTION,
        "box": list(lesion.box(spacing)),
        "measurements": [
            {
                "name": "long axis",
                "value": lesion.diameter_mm,
                "unit": "mm",
                "tolerance": TOLERANCE_MM,
            }
        ],
    }


def ground_truth_failures(results, must_find_mm: float = 15.0) -> list[str]:
    """What the pipeline got wrong against the inserted truth: a lesion of at least
    `must_find_mm` that no finding overlaps, or a found lesion measured outside its tolerance."""
    failures = []
    for result in results:
        if result.status != "done" or result.score is None:
            failures.append(f"{result.id}: read failed: {result.reason}")
            continue
        for measured in result.score.measurements:
            if not result.score.detected:
                if measured.expected >= must_find_mm:
                    failures.append(f"{result.id}: {measured.expected:g} mm lesion not found")
            elif not measured.within:
                failures.append(
                    f"{result.id}: {measured.name} {measured.measured} mm for a "
                    f"{measured.expected:g} mm lesion (tolerance {measured.tolerance:g} mm)"
                )
    return failures
