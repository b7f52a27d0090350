"""The built-in lesion-insertion set: real CT and MR anatomy with synthetic lesions of known
place, diameter and contrast, so detection and measurement error in mm are known exactly.

The sources are real slices from `pydicom-data` (found through pydicom's data manager, never
downloaded at run time): a contrast-enhanced abdominal CT (512², 0.86 mm pixels) and an abdominal
MR (484², 0.72 mm pixels). Each lesion is a round disc added to the liver as an offset in stored
values (HU on the CT), so the scan's own noise and texture stay; its edge is partial-volume
blended over one pixel. Positions, sizes and contrasts come from a seeded generator: the same
seed writes the same files."""

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

DIAMETERS_MM = (25.0, 20.0, 15.0, 12.0, 10.0, 8.0)
TOLERANCE_MM = 2.5  # about three pixels of these scans: the outline's own quantisation


@dataclass(frozen=True)
class Source:
    name: str  # prefix of the case ids
    file: str  # in pydicom-data
    liver: tuple[int, int, int, int]  # x1, y1, x2, y2 (source pixels) where centres may fall
    contrast: tuple[float, float]  # range of the value added inside a lesion
    question: str


SOURCES = (
    Source(
        "ct",
        "explicit_VR-UN.dcm",  # CT, pancreas protocol, portal venous phase
        (160, 225, 180, 265),
        (-90.0, -75.0),  # HU: a hypodense lesion in enhanced liver (~100 HU)
        "Is there a hypodense lesion larger than 10 mm? How large is it?",
    ),
    Source(
        "mr",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",  # MR, abdomen / liver
        (82, 238, 98, 252),
        (420.0, 480.0),  # signal: a hyperintense lesion in liver (~420)
        "Is there a hyperintense lesion larger than 10 mm? How large is it?",
    ),
)


@dataclass(frozen=True)
class Lesion:
    id: str
    source: str  # the pydicom-data file it is inserted into
    centre_px: tuple[float, float]  # x, y in source pixels
    diameter_mm: float
    contrast: float  # added inside the lesion (HU on CT; negative: hypodense)

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


def lesions(source: Source, seed: int = 16, count: int = len(DIAMETERS_MM)) -> tuple[Lesion, ...]:
    """`count` lesions, sizes cycling through DIAMETERS_MM; places and contrasts from `seed`."""
    rng = np.random.default_rng([seed, SOURCES.index(source)])
    made = []
    for i in range(count):
        x = float(rng.uniform(source.liver[0], source.liver[2]))
        y = float(rng.uniform(source.liver[1], source.liver[3]))
        made.append(
            Lesion(
                id=f"{source.name}-lesion-{i + 1:02d}",
                source=source.file,
                centre_px=(round(x, 1), round(y, 1)),
                diameter_mm=DIAMETERS_MM[i % len(DIAMETERS_MM)],
                contrast=round(float(rng.uniform(*source.contrast)), 1),
            )
        )
    return tuple(made)


def build_insertion_set(
    folder: Path, seed: int = 16, count: int = len(DIAMETERS_MM), mr_count: int | None = None
) -> Path:
    """Write one single-slice study per lesion and `cases.jsonl` (a site case list) into
    `folder`: `count` CT lesions and `mr_count` (default: `count`) MR ones. Returns the case
    file; `lesions.json` beside it holds the truth."""
    counts = (count, count if mr_count is None else mr_count)
    rows, truth = [], []
    for source, number in zip(SOURCES, counts, strict=True):
        made = lesions(source, seed, number)
        if made:
            rows += _insert(source, made, folder, seed)
            truth += [asdict(lesion) for lesion in made]
    folder.mkdir(parents=True, exist_ok=True)
    cases = folder / "cases.jsonl"
    cases.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    summary = {"seed": seed, "tolerance_mm": TOLERANCE_MM, "lesions": truth}
    (folder / "lesions.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return cases


def _insert(source: Source, made, folder: Path, seed: int) -> list[dict]:
    template = pydicom.dcmread(source_file(source.file))
    if template.file_meta.TransferSyntaxUID.is_compressed:
        template.decompress()
    spacing = tuple(float(v) for v in template.PixelSpacing)
    slope = float(getattr(template, "RescaleSlope", 1.0))
    stored = template.pixel_array.astype(np.float64)
    rows = []
    for lesion in made:
        added = lesion.contrast * _profile(lesion, stored.shape, spacing)
        raw = stored + added / slope
        _write_study(template, raw, folder / "studies" / lesion.id, lesion, seed)
        rows.append(_row(lesion, spacing, source.question))
    return rows


def source_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    if found is None:
        raise SourceError(
            f"{name} is not installed: the insertion set needs pydicom-data "
            "(pip install 'edge-agent[eval]')"
        )
    return Path(found)


def _profile(lesion: Lesion, shape, spacing) -> np.ndarray:
    """1 inside the disc, 0 outside, linear over one pixel at the edge (partial volume)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    x, y = lesion.centre_px
    distance = np.hypot((cols + 0.5 - x) * spacing[1], (rows + 0.5 - y) * spacing[0])
    return np.clip((lesion.diameter_mm / 2 - distance) / min(spacing) + 0.5, 0.0, 1.0)


def _write_study(template, raw: np.ndarray, folder: Path, lesion: Lesion, seed: int) -> None:
    ds = template.copy()
    dtype = template.pixel_array.dtype
    info = np.iinfo(dtype)
    ds.PixelData = np.clip(np.round(raw), info.min, info.max).astype(dtype).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    entropy = [lesion.source, str(seed), lesion.id]
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*entropy, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*entropy, "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*entropy, "instance"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = f"edge-agent insertion set: {lesion.diameter_mm:g} mm lesion"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / "slice.dcm", enforce_file_format=True)


def _row(lesion: Lesion, spacing, question: str) -> dict:
    return {
        "id": lesion.id,
        "study": f"studies/{lesion.id}",
        "question": question,
        "group": f"{lesion.id.split('-')[0]} {lesion.diameter_mm:g} mm",
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
