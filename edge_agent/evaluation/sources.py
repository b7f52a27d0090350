"""What a case points at, made readable by `read_study`: a plain image (VQA sets) becomes a
one-image DICOM study, a Study Instance UID is retrieved from the PACS, a SEG becomes a box."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from edge_agent.evaluation.cases import Case
from imaging.errors import BadInput

log = logging.getLogger(__name__)

# Retrieves a study by its Study Instance UID into a folder; the number of instances it stored.
# The CLI composes it from the gateway's C-GET and the configured PACS.
Retrieve = Callable[[str, Path], int]


class SourceError(BadInput):
    """A case's image, study or expected region cannot be used."""


def study_path(case: Case, folder: Path, retrieve: Retrieve | None = None) -> Path:
    """A path `read_study` reads for this case; `folder` holds anything made for it."""
    if case.study:
        return Path(case.study)
    if case.image:
        return image_study(Path(case.image), folder / "input")
    if retrieve is None:
        raise SourceError(f"case {case.id} names study_uid {case.study_uid}; give --pacs")
    count = retrieve(case.study_uid, folder / "input")
    log.info("case %s: retrieved %d instance(s) of %s", case.id, count, case.study_uid)
    return folder / "input"


def image_study(image: Path, folder: Path) -> Path:
    """A PNG/JPEG as a Secondary Capture whose UIDs derive from the image bytes (a re-run makes
    the same study). No pixel spacing: measurements are in pixels, as the image gives none."""
    data = image.read_bytes()
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise SourceError(f"{image} is not an image this build decodes (PNG, JPEG, BMP, TIFF)")
    if pixels.dtype != np.uint8:
        pixels = cv2.normalize(pixels, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    colour = pixels.ndim == 3 and not _grey(pixels)
    pixels = cv2.cvtColor(pixels[..., :3], cv2.COLOR_BGR2RGB) if colour else _as_grey(pixels)
    digest = hashlib.sha256(data).hexdigest()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=[digest, "instance"]
    )
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[digest, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[digest, "series"])
    ds.Modality, ds.ConversionType, ds.SeriesNumber, ds.InstanceNumber = "OT", "WSD", 1, 1
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{image.stem[:40]}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _grey(pixels: np.ndarray) -> bool:
    return bool(np.array_equal(pixels[..., 0], pixels[..., 1])) and bool(
        np.array_equal(pixels[..., 1], pixels[..., 2])
    )


def _as_grey(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] if pixels.ndim == 3 else pixels


def expected_box(case: Case) -> tuple[float, ...] | None:
    """The case's region in source pixels: its box, or the bounding box of its SEG's segments."""
    if case.box is not None:
        return case.box
    if not case.seg:
        return None
    try:
        mask = np.asarray(pydicom.dcmread(case.seg).pixel_array) > 0
    except (OSError, ValueError, AttributeError) as exc:
        raise SourceError(f"case {case.id}: SEG {case.seg} cannot be read: {exc}") from None
    mask = mask.reshape(-1, *mask.shape[-2:]).any(axis=0)
    if not mask.any():
        raise SourceError(f"case {case.id}: SEG {case.seg} has no segmented pixel")
    rows, cols = np.nonzero(mask)
    return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
