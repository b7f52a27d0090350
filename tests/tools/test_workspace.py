from __future__ import annotations

import numpy as np
import pytest

from tests.support import phantom_frame
from tools.errors import ToolError
from tools.toolbox import default_toolbox
from tools.workspace import Affine, Workspace


@pytest.fixture
def marked():
    """A 200x160 frame, -1000 everywhere except one 300 HU pixel at column 150, row 40."""
    values = np.full((160, 200), -1000)
    values[40, 150] = 300
    return phantom_frame(values, spacing=(0.8, 0.8))


def test_shown_resize_is_recorded_as_an_affine(marked):
    image = Workspace().show(marked, max_side=400)
    assert image.size == (400, 320)
    np.testing.assert_allclose(
        image.to_source.apply([(300, 80), (400, 320)]), [(150, 40), (200, 160)]
    )


def test_zoom_maps_back_to_source_pixels_exactly(marked):
    workspace, toolbox = Workspace(), default_toolbox()
    shown = workspace.show(marked, max_side=400)  # 2x the source
    zoom = toolbox.call(
        "zoom_in", {"index": shown.index, "bbox_2d": [280, 60, 340, 110]}, workspace
    ).image
    assert zoom.size == (512, 427)
    # The box's corners on the zoom land on the box's corners in the source, to the last bit.
    corners = zoom.to_source.apply([(0, 0), zoom.size])
    np.testing.assert_array_equal(corners, [(140.0, 30.0), (170.0, 55.0)])
    # And back: a source point goes to the zoom and returns unchanged.
    point = np.array([[151.25, 40.5]])
    there = zoom.to_source.inverse().apply(point)
    np.testing.assert_allclose(zoom.to_source.apply(there), point, rtol=0, atol=1e-12)


def test_zoom_of_a_zoom_keeps_the_marked_pixel_where_it_is(marked):
    workspace, toolbox = Workspace(), default_toolbox()
    shown = workspace.show(marked, max_side=400)
    first = toolbox.call("zoom_in", {"index": 0, "bbox_2d": [200, 0, 400, 200]}, workspace).image
    second = toolbox.call(
        "zoom_in", {"index": first.index, "bbox_2d": [100, 50, 300, 250]}, workspace
    ).image
    for image in (shown, first, second):
        weight = image.values() + 1000  # zero everywhere but around the marked pixel
        rows, cols = np.mgrid[: weight.shape[0], : weight.shape[1]]
        centre = [
            (np.sum(cols * weight) / weight.sum() + 0.5, np.sum(rows * weight) / weight.sum() + 0.5)
        ]
        # The marked pixel's centre is (150.5, 40.5) in continuous source coordinates.
        np.testing.assert_allclose(image.to_source.apply(centre)[0], (150.5, 40.5), atol=0.02)


def test_a_box_outside_the_image_is_a_clear_error(marked):
    workspace = Workspace()
    workspace.show(marked)
    with pytest.raises(ToolError, match=r"lies outside image #0, which is 200x160 pixels"):
        default_toolbox().call("zoom_in", {"index": 0, "bbox_2d": [250, 10, 300, 50]}, workspace)
    with pytest.raises(ToolError, match="is empty"):
        default_toolbox().call("zoom_in", {"index": 0, "bbox_2d": [50, 10, 20, 50]}, workspace)
    with pytest.raises(ToolError, match="there is no image #3"):
        default_toolbox().call("zoom_in", {"index": 3, "bbox_2d": [0, 0, 10, 10]}, workspace)


def test_window_tool_rerenders_from_values(marked):
    workspace = Workspace()
    workspace.show(marked)
    bone = default_toolbox().call("window", {"index": 0, "center": 300, "width": 2}, workspace)
    assert bone.image.pixels[40, 150] == 255 and bone.image.pixels.max() == 255
    assert bone.image.pixels.sum() == 255  # everything else below the window


def test_affine_composition_is_exact_for_scale_and_shift():
    a = Affine.scale_then_shift(0.25, 0.5, 10.0, 20.0)
    assert a.inverse().inverse() == a
    assert a.map_box((0, 0, 4, 2)) == (10.0, 20.0, 11.0, 21.0)
