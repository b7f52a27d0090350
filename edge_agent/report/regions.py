"""Where each finding lies on its source image: the mask (if any), an outline polygon and a box.

DICOM references need source pixels, not the views the policy saw; every workspace image maps back
to its source frame, so this is read straight off the workspace."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.study import ImageRef
from edge_agent.trajectory import ClaimRecord
from tools.workspace import Workspace

UPSAMPLE = 8  # outline resolution, per source pixel


@dataclass(frozen=True, eq=False)
class FindingRegion:
    number: int  # 1-based, as listed in report.json
    text: str
    source: ImageRef
    polygon: np.ndarray  # (n, 2) closed outline, continuous source (column, row) coordinates
    mask: np.ndarray | None  # bool on the source grid, when a tool outlined the finding
    measurements: tuple[dict, ...]
    evidence: tuple[int, ...]


def finding_regions(
    claims: tuple[ClaimRecord, ...], findings: list[dict], workspace: Workspace
) -> list[FindingRegion]:
    """One region per finding: the newest cited image with a mask, else the newest cited ROI."""
    regions = []
    for number, (claim, finding) in enumerate(zip(claims, findings, strict=True), 1):
        images = [workspace.get(i) for i in claim.evidence]
        masked = [image for image in images if image.mask is not None]
        if masked:
            image = masked[-1]
            polygon = outline(image.mask)
        else:
            image = images[-1]
            polygon = box_polygon(image.source_roi)
        regions.append(
            FindingRegion(
                number=number,
                text=claim.text,
                source=image.frame.ref,
                polygon=polygon,
                mask=image.mask,
                measurements=tuple(finding["measurements"]),
                evidence=claim.evidence,
            )
        )
    return regions


def outline(mask: np.ndarray) -> np.ndarray:
    """The outer boundary of the mask's largest part, along the 0.5 level between pixel centres,
    so the polygon's area matches the pixel count the measurement used."""
    up = cv2.resize(
        mask.astype(np.float32), None, fx=UPSAMPLE, fy=UPSAMPLE, interpolation=cv2.INTER_LINEAR
    )
    contours, _ = cv2.findContours(
        (up >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    largest = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(float)
    points = (largest + 0.5) / UPSAMPLE
    return np.vstack([points, points[:1]])  # a closed SCOORD POLYLINE repeats its first point


def box_polygon(box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)], dtype=float)


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area in the points' own units."""
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
