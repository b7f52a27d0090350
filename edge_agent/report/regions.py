"""Where each finding lies on its source image: the mask (if any), an outline polygon and a box.

DICOM references need source pixels, not the views the policy saw; every evidence image's record
maps back to its source frame, so this is read off the trajectory and the evidence files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.report.content import claim_measurements
from edge_agent.report.evidence import EvidenceImage
from edge_agent.trajectory import ImageRecord, Trajectory
from imaging.frame import ImageRef
from tools.masks import mask_box
from tools.measurement import Measurement

UPSAMPLE = 8  # outline resolution, per source pixel


@dataclass(frozen=True, eq=False)
class FindingRegion:
    number: int  # 1-based, as listed in report.json
    text: str
    source: ImageRef
    polygon: np.ndarray | None  # (n, 2) closed outline, continuous source (column, row) coords;
    # None when a finding of a cine or video is a time window, not a place on one frame
    mask: np.ndarray | None  # bool on the source grid, when a tool outlined the finding
    measurements: tuple[Measurement, ...]
    evidence: tuple[int, ...]
    frames: tuple[int, ...] = ()  # cine / video frames the evidence shows, in order
    time_window_s: tuple[float, float] | None = None


def finding_regions(
    trajectory: Trajectory, evidence: Mapping[int, EvidenceImage]
) -> list[FindingRegion]:
    """One region per finding: the newest cited image with a mask, else the newest cited ROI;
    for a cine or video, the time window the cited frames span when no place was marked.
    `evidence` holds every cited image by its index."""
    claims = trajectory.answer.findings if trajectory.answer else ()
    regions = []
    for number, claim in enumerate(claims, 1):
        images = [evidence[i] for i in claim.evidence]
        times = [t for image in images for t in image.record.times_s]
        image, polygon = _place(images, timed=bool(times))
        regions.append(
            FindingRegion(
                number=number,
                text=claim.text,
                source=image.record.source,
                polygon=polygon,
                mask=image.mask,
                measurements=claim_measurements(trajectory, claim),
                evidence=claim.evidence,
                frames=tuple(sorted({f for i in images for f in i.frames})) if times else (),
                time_window_s=(min(times), max(times)) if times else None,
            )
        )
    return regions


def _place(images: list[EvidenceImage], timed: bool) -> tuple[EvidenceImage, np.ndarray | None]:
    """The image that says where the finding is, and its outline on the source frame."""
    masked = outlining_image([image.record for image in images])
    if masked is not None:
        image = images[masked]
        return image, outline(image.mask)
    views = [image for image in images if not image.is_sheet]
    if timed:  # a whole video frame or a contact sheet marks a moment, not a place
        views = [image for image in views if not image.covers_whole_frame()]
    if not views:
        return images[-1], None
    return views[-1], box_polygon(views[-1].record.roi_px)


def outlining_image(records: Sequence[ImageRecord]) -> int | None:
    """Which of a finding's cited images (in citation order) places it by its mask: the newest
    one a tool outlined; None when none was."""
    return next((i for i in reversed(range(len(records))) if records[i].mask_file), None)


def outline(mask: np.ndarray) -> np.ndarray:
    """The outer boundary of the mask's largest part, along the 0.5 level between pixel centres,
    so the polygon's area matches the pixel count the measurement used. Only the mask's box and
    a pixel around it are upsampled (the same outline as the whole frame's, where a 512 x 512
    frame would be 4096 x 4096 floats)."""
    top = left = 0
    if mask.any():  # an empty mask has no box: the whole frame, which has no contour
        x1, y1, x2, y2 = (int(edge) for edge in mask_box(mask))
        top, left = max(y1 - 1, 0), max(x1 - 1, 0)
        mask = mask[top : y2 + 1, left : x2 + 1]
    up = cv2.resize(
        mask.astype(np.float32), None, fx=UPSAMPLE, fy=UPSAMPLE, interpolation=cv2.INTER_LINEAR
    )
    contours, _ = cv2.findContours(
        (up >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    largest = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(float)
    points = (largest + 0.5) / UPSAMPLE + (left, top)
    return np.vstack([points, points[:1]])  # a closed SCOORD POLYLINE repeats its first point


def box_polygon(box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)], dtype=float)


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area in the points' own units."""
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
