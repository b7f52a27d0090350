from __future__ import annotations

import math

import numpy as np
import pytest

from imaging.records import to_plain
from tests.support import phantom_frame
from tools.toolbox import default_toolbox
from tools.workspace import Workspace

SPACING = (0.7, 0.7)


@pytest.fixture
def abdomen():
    """Air around a 40 HU body with a 5 HU cyst (r 12 mm) and a 700 HU bone (r 8 mm)."""
    rows, cols = np.mgrid[:256, :256]
    values = np.full((256, 256), -1000.0)
    body = ((cols - 128) / 110) ** 2 + ((rows - 128) / 90) ** 2 <= 1
    values[body] = 40
    cyst = np.hypot((cols + 0.5 - 90) * SPACING[1], (rows + 0.5 - 110) * SPACING[0]) <= 12
    values[cyst] = 5
    bone = np.hypot((cols + 0.5 - 170) * SPACING[1], (rows + 0.5 - 150) * SPACING[0]) <= 8
    values[bone] = 700
    rng = np.random.default_rng(0)
    return phantom_frame(values + rng.normal(0, 3, values.shape), SPACING)


def test_locate_finds_the_hypodense_cyst_first(abdomen):
    workspace = Workspace()
    workspace.show(abdomen)
    found = default_toolbox().call(
        "locate", {"index": 0, "captions": ["hypodense lesion"]}, workspace
    )
    top = to_plain(found.payload)["candidates"][0]
    x1, y1, x2, y2 = top["bbox_2d"]
    assert x1 < 90 < x2 and y1 < 110 < y2
    assert top["area"] == pytest.approx(math.pi * 12**2, rel=0.1)
    assert found.image.index == 1 and not found.error


def test_locate_bone_and_an_unsupported_caption(abdomen):
    workspace = Workspace()
    workspace.show(abdomen)
    found = default_toolbox().call("locate", {"index": 0, "captions": ["bone", "liver"]}, workspace)
    [bone] = to_plain(found.payload)["candidates"]
    x1, y1, x2, y2 = bone["bbox_2d"]
    assert x1 < 170 < x2 and y1 < 150 < y2
    assert to_plain(found.payload)["unsupported"] == ["liver"]
    assert "'liver'" in found.text


def test_a_caption_nothing_supports_is_an_observation_not_an_error(abdomen):
    workspace = Workspace()
    workspace.show(abdomen)
    said = default_toolbox().call("locate", {"index": 0, "captions": ["pancreas"]}, workspace)
    assert not said.error and said.image is None
    assert "cannot find 'pancreas'" in said.text and "hypodense" in said.text


def test_segment_outlines_the_cyst_on_a_zoom(abdomen):
    workspace, toolbox = Workspace(), default_toolbox()
    workspace.show(abdomen)
    zoom = toolbox.call("zoom_in", {"index": 0, "bbox_2d": [60, 80, 120, 140]}, workspace)
    outline = toolbox.call(
        "segment", {"index": zoom.image.index, "bbox_2d": [100, 100, 412, 412]}, workspace
    )
    mask = outline.image.mask
    assert mask.shape == abdomen.shape  # kept on the source grid
    area = mask.sum() * SPACING[0] * SPACING[1]
    assert area == pytest.approx(math.pi * 12**2, rel=0.1)
    rows, cols = np.nonzero(mask)
    assert abs(cols.mean() + 0.5 - 90) < 1 and abs(rows.mean() + 0.5 - 110) < 1
