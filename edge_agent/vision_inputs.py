"""What the exported Qwen2.5-VL vision encoder takes for one RGB image, computed with numpy (the
runtime has no torch): the image resized to multiples of 28, normalised and cut into 2x14x14
patches, with the patches' rotary positions, the window order and the attention bounds that
transformers derives from image_grid_thw."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VisionSpec:
    """The image processor's and the vision tower's settings, as the export's manifest has them."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    window_size: int
    min_pixels: int
    max_pixels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_record(cls, record: dict) -> VisionSpec:
        """From the manifest's "vision" "spec" (JSON lists become tuples)."""
        return cls(**{**record, "mean": tuple(record["mean"]), "std": tuple(record["std"])})

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


def smart_resize(height: int, width: int, spec: VisionSpec) -> tuple[int, int]:
    """The size the processor resizes to: multiples of 28, pixel count within the limits."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"image {width}x{height}: aspect ratio above 200")
    factor = spec.factor
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > spec.max_pixels:
        beta = math.sqrt(height * width / spec.max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < spec.min_pixels:
        beta = math.sqrt(spec.min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_inputs(rgb: np.ndarray, spec: VisionSpec) -> tuple[dict[str, np.ndarray], tuple]:
    """The encoder's feeds for one image, and its grid (t, h, w) in patches."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"images must be RGB uint8 (h, w, 3), got {rgb.dtype} {rgb.shape}")
    height, width = smart_resize(rgb.shape[0], rgb.shape[1], spec)
    if (height, width) != rgb.shape[:2]:
        from PIL import Image  # the processor's own resize: PIL bicubic, on the uint8 image

        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC))
    image = (rgb.astype(np.float32) / 255.0 - np.float32(spec.mean)) / np.float32(spec.std)
    grid = (1, height // spec.patch_size, width // spec.patch_size)
    feeds = {
        "pixel_values": _patches(image.transpose(2, 0, 1), grid, spec),
        "position_ids": _positions(grid, spec.merge_size),
        "cu_seqlens": np.array([0, grid[1] * grid[2]], dtype=np.int64),
    }
    feeds["window_index"], feeds["cu_window_seqlens"] = _windows(grid, spec)
    return feeds, grid


def _patches(image: np.ndarray, grid: tuple, spec: VisionSpec) -> np.ndarray:
    """(C, H, W) -> (patches, C * temporal * patch * patch), merge blocks kept together."""
    channels, (_, grid_h, grid_w), m, p = image.shape[0], grid, spec.merge_size, spec.patch_size
    patches = image.reshape(channels, grid_h // m, m, p, grid_w // m, m, p)
    patches = np.transpose(patches, (1, 4, 2, 5, 0, 3, 6))  # (gh, gw, mh, mw, C, ph, pw)
    patches = np.broadcast_to(
        patches[:, :, :, :, :, None], (*patches.shape[:5], spec.temporal_patch_size, p, p)
    )
    return np.ascontiguousarray(
        patches.reshape(grid_h * grid_w, channels * spec.temporal_patch_size * p * p),
        dtype=np.float32,
    )


def _positions(grid: tuple, merge: int) -> np.ndarray:
    """(row, column) of every patch, in the order the patches come (merge blocks together)."""
    _, grid_h, grid_w = grid
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    shape = (grid_h // merge, merge, grid_w // merge, merge)
    rows = rows.reshape(shape).transpose(0, 2, 1, 3).ravel()
    cols = cols.reshape(shape).transpose(0, 2, 1, 3).ravel()
    return np.stack([rows, cols], axis=-1).astype(np.int64)


def _windows(grid: tuple, spec: VisionSpec) -> tuple[np.ndarray, np.ndarray]:
    """Merged patches reordered window by window, and the windows' bounds in patches."""
    _, grid_h, grid_w = grid
    size = spec.window_size // spec.merge_size // spec.patch_size
    llm_h, llm_w = grid_h // spec.merge_size, grid_w // spec.merge_size
    pad_h, pad_w = size - llm_h % size, size - llm_w % size
    index = np.pad(
        np.arange(llm_h * llm_w).reshape(llm_h, llm_w), ((0, pad_h), (0, pad_w)), constant_values=-1
    )
    windows_h, windows_w = index.shape[0] // size, index.shape[1] // size
    index = index.reshape(windows_h, size, windows_w, size).transpose(0, 2, 1, 3)
    index = index.reshape(windows_h * windows_w, size * size)
    counts = (index >= 0).sum(1) * spec.merge_size**2
    bounds = np.unique(np.concatenate([[0], np.cumsum(counts)]))  # empty windows add nothing
    return index[index >= 0].astype(np.int64), bounds.astype(np.int64)


def mrope_positions(
    ids: list[int], start: int, image_token_id: int, grids: list[tuple], merge: int
) -> np.ndarray:
    """M-RoPE positions (3, len(ids)) of a run of tokens whose first position is `start`: text
    tokens count up on all three rows; each block of image tokens (one per grid, in order) sits
    at one temporal position with its merged patch's row and column added, and the text after it
    goes on from the block's largest position + 1 (transformers' get_rope_index, images only)."""
    rows, position, images, at = [], start, iter(grids), 0
    while at < len(ids):
        if ids[at] != image_token_id:
            rows.append((position, position, position))
            position, at = position + 1, at + 1
            continue
        _, grid_h, grid_w = next(images)
        height, width = grid_h // merge, grid_w // merge
        r, c = np.divmod(np.arange(height * width), width)
        rows += zip([position] * len(r), position + r, position + c, strict=True)
        position, at = position + max(height, width), at + height * width
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3).T
