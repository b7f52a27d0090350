"""A tool's output image as the profile says the model saw it in training: for Ophiuchus's SAM2
and BiomedParse, the whole image the tool was called on with the mask painted in (red at alpha
0.5, as the upstream env's `_save_overlay_image`), whatever our tool drew for a person; a raw
Zoom-in crop as cut. An image under the profile's `min_pixels` reaches the vision encoder
enlarged to about that area (upstream `process_image`); its turn still states its own size."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from tools.observation import LocatePayload, Payload
from tools.render import to_rgb

if TYPE_CHECKING:
    from edge_agent.formats.profile import Profile
    from tools.workspace import Workspace, WorkspaceImage


def shown_pixels(
    profile: Profile, workspace: Workspace, image: WorkspaceImage, payload: Payload | None = None
) -> np.ndarray:
    """RGB pixels of `image` as the model is shown it; `payload`: what the tool that made it
    returned (a locate call's mask is there, on the grid of the image it was called on)."""
    return enlarged(_pixels(profile, workspace, image, payload), profile.min_pixels)


def _pixels(profile: Profile, workspace: Workspace, image: WorkspaceImage, payload) -> np.ndarray:
    try:
        render = profile.action_for(image.tool).render
    except KeyError:  # an original, or a tool the profile does not name
        render = "as_is"
    if render != "mask_overlay" or image.parent is None:
        return to_rgb(image.pixels)
    parent = workspace.get(image.parent)
    if isinstance(payload, LocatePayload) and payload.mask is not None:
        mask = payload.mask
    elif image.mask is not None:
        mask = parent.mask_here(image.mask)
    else:
        mask = np.zeros(parent.pixels.shape[:2], bool)  # nothing found: the image, unpainted
    return paint_mask(to_rgb(parent.pixels), mask, profile.mask_colour, profile.mask_alpha)


def enlarged(rgb: np.ndarray, min_pixels: int) -> np.ndarray:
    """Upstream `process_image`: an image under `min_pixels` is resized by sqrt(min / area),
    sizes truncated (PIL's bicubic resize; cv2's here)."""
    height, width = rgb.shape[:2]
    if not min_pixels or width * height >= min_pixels:
        return rgb
    factor = math.sqrt(min_pixels / (width * height))
    size = (int(width * factor), int(height * factor))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)


def paint_mask(
    rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float
) -> np.ndarray:
    """The upstream blend, to the last bit: float32, colour over the mask, truncated to uint8."""
    image = rgb.astype(np.float32)
    overlay = image.copy()
    overlay[mask] = np.array(colour, dtype=np.float32)
    return (image * (1.0 - alpha) + overlay * alpha).clip(0, 255).astype(np.uint8)
