"""The weight-free segment: GrabCut on a bounded copy of the box, outlines as at full size."""

from __future__ import annotations

import cv2
import numpy as np
import pydicom
import pytest

import tools.segment as segment
from imaging.records import to_plain
from tests.support import bundled, disc, phantom_frame
from tools.toolbox import default_toolbox
from tools.workspace import Workspace

SPACING = (0.7, 0.7)
CENTRE, RADIUS_PX = (330, 300), 70  # a round 100 HU lesion in the body of a real CT slice


@pytest.fixture
def grabcut_inputs(monkeypatch) -> list[tuple[int, ...]]:
    """The shape of every image handed to the real cv2.grabCut."""
    seen, real = [], cv2.grabCut

    def spy(image, *args):
        seen.append(image.shape)
        return real(image, *args)

    monkeypatch.setattr(cv2, "grabCut", spy)
    return seen


def lesion_on_ct() -> tuple[Workspace, np.ndarray]:
    ds = pydicom.dcmread(bundled("693_UNCR.dcm"))
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lesion = disc(values.shape, CENTRE, RADIUS_PX * SPACING[0], SPACING, 1, 0).astype(bool)
    values[lesion] = 100 + np.random.default_rng(1).normal(0, 8, lesion.sum())
    workspace = Workspace()
    workspace.show(phantom_frame(values, SPACING))
    return workspace, lesion


def outline(workspace: Workspace) -> tuple[np.ndarray, str]:
    r = 1.5 * RADIUS_PX
    box = [CENTRE[0] - r, CENTRE[1] - r, CENTRE[0] + r, CENTRE[1] + r]
    said = default_toolbox().call("segment", {"index": 0, "bbox_2d": box}, workspace)
    return said.image.mask, to_plain(said.payload)["method"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_the_outline_of_a_lesion_on_a_ct_matches_full_resolution_grabcut(
    monkeypatch, grabcut_inputs
):
    workspace, lesion = lesion_on_ct()
    fast, method = outline(workspace)
    assert method == segment.METHOD
    [(rows, cols, _)] = set(grabcut_inputs)  # its first iteration, then the others
    assert rows * cols <= segment.GRABCUT_PIXELS < 420 * 420  # the box and its context, shrunk
    # The whole image at full size, as GrabCut ran before it was bounded: IoU 0.991 measured.
    monkeypatch.setattr(segment, "GRABCUT_PIXELS", 10**9)
    monkeypatch.setattr(segment, "CONTEXT", 10.0)
    full, _ = outline(workspace)
    assert grabcut_inputs[-1][:2] == (512, 512)
    assert iou(fast, full) >= 0.97
    assert iou(fast, lesion) >= 0.97


def test_a_large_flat_image_hands_grabcut_a_bounded_copy(grabcut_inputs):
    values = 100 + np.random.default_rng(0).integers(0, 2, (3000, 3000))
    workspace = Workspace()
    workspace.show(phantom_frame(values, SPACING))
    box = [100, 100, 2900, 2900]
    said = default_toolbox().call("segment", {"index": 0, "bbox_2d": box}, workspace)
    [(rows, cols, _)] = grabcut_inputs  # one iteration: it left no foreground
    assert rows * cols <= segment.GRABCUT_PIXELS
    assert (rows, cols) == (256, 256)  # a square box keeps its shape
    # What the user gets: a full-size mask, nothing outside the box, and how it was found (a flat
    # image gives GrabCut no foreground to find).
    mask = said.image.mask
    assert mask.shape == (3000, 3000)
    inside = np.zeros_like(mask)
    inside[100:2900, 100:2900] = True
    assert mask.any() and not (mask & ~inside).any()
    assert to_plain(said.payload)["method"] == segment.FALLBACK


@pytest.fixture
def grabcut_runs(monkeypatch) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What each GrabCut run was handed (image, labels), and the labels it left."""
    runs, real = [], segment._run_grabcut

    def spy(image, labels, iterations, box):
        given = labels.copy()
        real(image, labels, iterations, box)
        runs.append((image.copy(), given, labels.copy()))

    monkeypatch.setattr(segment, "_run_grabcut", spy)
    return runs


def one_call(image: np.ndarray, labels: np.ndarray, iterations: int = 5) -> np.ndarray:
    """The labels of one cv2.grabCut call of `iterations` from the same state."""
    labels = labels.copy()
    cv2.setRNGSeed(0)
    models = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(image, labels, None, *models, iterations, cv2.GC_INIT_WITH_MASK)
    return labels


def test_grabcut_stops_after_an_iteration_that_leaves_no_foreground(grabcut_runs, grabcut_inputs):
    # A flat image: GrabCut leaves no foreground after one iteration, so the fallback outlines
    # the box, and the four more iterations (which could only repeat that) are not run.
    values = 100 + np.random.default_rng(0).integers(0, 2, (512, 512))
    workspace = Workspace()
    workspace.show(phantom_frame(values, SPACING))
    said = default_toolbox().call(
        "segment", {"index": 0, "bbox_2d": [100, 100, 400, 400]}, workspace
    )
    assert to_plain(said.payload)["method"] == segment.FALLBACK
    [(image, given, left)] = grabcut_runs
    assert len(grabcut_inputs) == 1  # the first iteration's call alone
    assert not segment._foreground(left).any()
    assert np.array_equal(left, one_call(image, given))  # all five iterations: the same labels


def test_grabcut_that_finds_an_object_runs_every_iteration_as_one_call_would(
    grabcut_runs, grabcut_inputs
):
    workspace, _ = lesion_on_ct()
    outline(workspace)
    [(image, given, left)] = grabcut_runs
    assert len(grabcut_inputs) == 2  # the first iteration, then the other four
    assert segment._foreground(left).any()
    assert np.array_equal(left, one_call(image, given))
