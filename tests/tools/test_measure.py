from __future__ import annotations

import math

import numpy as np
import pytest

from imaging.records import to_plain
from tests.support import disc, phantom_frame
from tools.toolbox import default_toolbox
from tools.workspace import Workspace


@pytest.mark.parametrize("spacing", [(0.5, 0.5), (0.6, 0.4)])
def test_disc_area_and_diameter_are_within_two_percent(spacing):
    radius = 20.0  # mm
    values = disc((256, 256), (128, 128), radius, spacing, inside=60, outside=-100)
    workspace, toolbox = Workspace(), default_toolbox()
    workspace.show(phantom_frame(values, spacing))
    outlined = toolbox.call("segment", {"index": 0, "bbox_2d": [50, 50, 206, 206]}, workspace)
    result = toolbox.call("measure", {"index": outlined.image.index}, workspace)
    got = {m["name"]: m for m in to_plain(result.payload)["measurements"]}
    assert got["area"]["unit"] == "mm2"
    assert got["area"]["value"] == pytest.approx(math.pi * radius**2, rel=0.02)
    assert got["long axis"]["value"] == pytest.approx(2 * radius, rel=0.02)
    assert got["mean"] == {"name": "mean", "value": 60.0, "unit": "[hnsf'U]"}
    assert got["SD"]["value"] == 0.0


def test_measuring_on_a_zoom_gives_the_source_numbers():
    spacing = (0.5, 0.5)
    values = disc((200, 200), (100, 100), 10.0, spacing, inside=40, outside=-100)
    workspace, toolbox = Workspace(), default_toolbox()
    workspace.show(phantom_frame(values, spacing))
    direct = toolbox.call("measure", {"index": 0, "bbox_2d": [80, 80, 120, 120]}, workspace)
    zoom = toolbox.call("zoom_in", {"index": 0, "bbox_2d": [60, 60, 140, 140]}, workspace)
    # The same box, drawn on the 6.4x zoom.
    via_zoom = toolbox.call(
        "measure", {"index": zoom.image.index, "bbox_2d": [128, 128, 384, 384]}, workspace
    )
    assert via_zoom.payload == direct.payload
    area = next(m for m in to_plain(direct.payload)["measurements"] if m["name"] == "area")
    assert area["value"] == pytest.approx(40 * 40 * 0.25)


def test_without_pixel_spacing_sizes_are_in_pixels():
    values = disc((100, 100), (50, 50), 10.0, (1.0, 1.0), inside=100, outside=0)
    workspace = Workspace()
    workspace.show(phantom_frame(values, spacing=None, modality="MR"))
    result = default_toolbox().call("measure", {"index": 0, "bbox_2d": [0, 0, 10, 20]}, workspace)
    units = {m["name"]: m["unit"] for m in to_plain(result.payload)["measurements"]}
    assert units == {"area": "{pixel2}", "long axis": "{pixel}", "mean": "1", "SD": "1"}


def test_measure_without_box_needs_a_mask():
    workspace = Workspace()
    workspace.show(phantom_frame(np.zeros((50, 50))))
    with pytest.raises(Exception, match="carries no mask; pass bbox_2d"):
        default_toolbox().call("measure", {"index": 0}, workspace)
