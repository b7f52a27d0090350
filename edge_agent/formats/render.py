"""A tool's output image as the profile says the model saw it in training: for Ophiuchus's SAM2
and BiomedParse, the whole image the tool was called on with the mask painted in (red at alpha
0.5, as the upstream env's `_save_overlay_image`), whatever our tool drew for a person."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tools.render import to_rgb

if TYPE_CHECKING:
    from edge_agent.formats.profile import Profile
    from tools.workspace import Workspace, WorkspaceImage


def shown_pixels(profile: Profile, workspace: Workspace, image: WorkspaceImage) -> np.ndarray:
    """RGB pixels of `image` as the model is shown it."""
    try:
        render = profile.action_for(image.tool).render
    except KeyError:  # an original, or a tool the profile does not name
        render = "as_is"
    if render == "mask_overlay" and image.mask is not None and image.parent is not None:
        parent = workspace.get(image.parent)
        mask = parent.mask_here(image.mask)
        return paint_mask(to_rgb(parent.pixels), mask, profile.mask_colour, profile.mask_alpha)
    return to_rgb(image.pixels)


def paint_mask(
    rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float
) -> np.ndarray:
    """The upstream blend, to the last bit: float32, colour over the mask, truncated to uint8."""
    image = rgb.astype(np.float32)
    overlay = image.copy()
    overlay[mask] = np.array(colour, dtype=np.float32)
    return (image * (1.0 - alpha) + overlay * alpha).clip(0, 255).astype(np.uint8)
