"""A cited evidence image as the DICOM writers need it: from the read that made it, or read back
from the read's output folder.

The trajectory keeps each image's record (source frame, box in source pixels, frames and times)
and the output folder its PNG and mask; with the source header that is everything an SR, SEG or
Secondary Capture needs, so a replay writes them as the read did, without the live workspace
(PNG is lossless: the pixels and the mask read back are the ones the read had)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydicom import Dataset

from edge_agent.trajectory import ImageRecord
from imaging.errors import ReportError
from imaging.frame import Geometry
from imaging.instance import frame_geometry


@dataclass(frozen=True, eq=False)
class EvidenceImage:
    record: ImageRecord
    pixels: np.ndarray  # as the policy saw it, overlays burned in: h x w grey or h x w x 3 RGB
    mask: np.ndarray | None  # bool on the source frame's grid, when a tool outlined something
    frame_shape: tuple[int, int]  # rows, columns of the source frame
    geometry: Geometry  # of the source frame

    @property
    def is_sheet(self) -> bool:
        """A contact sheet of several frames, not a view of one."""
        return bool(self.record.frame_files)

    @property
    def frames(self) -> tuple[int, ...]:
        """The source frame numbers the image shows, in time order."""
        return self.record.frames or (self.record.source.frame,)

    def covers_whole_frame(self) -> bool:
        x1, y1, x2, y2 = self.record.roi_px
        rows, cols = self.frame_shape
        return x1 <= 0.5 and y1 <= 0.5 and x2 >= cols - 0.5 and y2 >= rows - 0.5


def load_evidence(record: ImageRecord, out_dir: Path, source: Dataset) -> EvidenceImage:
    """Pixels and mask from the PNGs the read wrote; shape and geometry from the source header."""
    mask = _png(out_dir / record.mask_file) >= 128 if record.mask_file else None
    return evidence_image(record, _png(out_dir / record.file), mask, source)


def evidence_image(
    record: ImageRecord, pixels: np.ndarray, mask: np.ndarray | None, source: Dataset
) -> EvidenceImage:
    """An evidence image from its pixels and mask, as its PNGs hold them or as the read that
    made them still has them; shape and geometry from the source header."""
    shape = (int(source.Rows), int(source.Columns))
    if mask is not None and mask.shape != shape:
        raise ReportError(
            f"{record.mask_file} is {mask.shape[1]}x{mask.shape[0]}, but its source image "
            f"{record.source.sop_instance_uid} is {shape[1]}x{shape[0]}"
        )
    return EvidenceImage(
        record=record,
        pixels=pixels,
        mask=mask,
        frame_shape=shape,
        geometry=frame_geometry(source, record.source.frame),
    )


def mask_png(mask: np.ndarray) -> np.ndarray:
    """How a mask is kept as evidence: 255 inside, 0 outside, so it is also a picture."""
    return mask.astype(np.uint8) * 255


def _png(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ReportError(f"evidence image {path.name} is missing or not a PNG in {path.parent}")
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
