"""Tool outputs are shown as the model saw them in training: SAM2 / BiomedParse masks painted on
the whole image the tool was called on, to the last bit of the upstream env's overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.formats import load_profile
from edge_agent.formats.render import paint_mask, shown_pixels
from tests.support import phantom_frame
from tools.workspace import Workspace

GOLDEN = Path(__file__).parents[1] / "data" / "golden"


def test_our_mask_overlay_equals_the_upstream_envs_bit_for_bit():
    sample = np.load(GOLDEN / "overlay_biomedparse.npz")
    assert sample["mask"].any() and not sample["mask"].all()
    profile = load_profile("ophiuchus-v1")
    ours = paint_mask(sample["image"], sample["mask"], profile.mask_colour, profile.mask_alpha)
    np.testing.assert_array_equal(ours, sample["overlay"])


def test_a_segmentation_is_shown_as_the_whole_image_with_its_mask_in_red():
    workspace = Workspace()
    values = np.full((256, 256), 40.0)  # 256 x 256: as large as the encoder is shown it
    parent = workspace.show(phantom_frame(values))
    mask = np.zeros((256, 256), bool)
    mask[20:30, 10:40] = True
    outline = np.zeros((256, 256, 3), np.uint8)  # what our tool drew for a person: not shown
    segmented = workspace.derive(parent, "segment", pixels=outline, mask=mask)
    shown = shown_pixels(load_profile("ophiuchus-v1"), workspace, segmented)
    grey = shown[0, 0]
    assert shown.shape == (256, 256, 3) and grey[0] == grey[1] == grey[2]
    red = shown[25, 20]
    assert red[0] == int(np.float32(grey[0]) * 0.5 + 127.5) and red[1] == red[2] == grey[0] // 2
    assert (shown[~mask] == grey).all()
