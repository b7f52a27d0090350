"""Second-look SFT samples as training tensors: the turn texts tokenized as the runtime tokenizes
them, each image's pad widened to its merged patches, the images turned into patches by the
runtime's own preprocessing (`vision_inputs.image_inputs`), M-RoPE positions by the runtime's
`mrope_positions`. The system prompt is the same in every sample: it is split off as a shared
prefix, computed once per batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.vision_inputs import VisionSpec, image_inputs, mrope_positions
from export.look_samples import Sample
from export.second_look import CELL, GRID, SHOWN, LookCase

# The trained checkpoint's image processor: a 256 x 256 shown image (the profile's min_pixels)
# is encoded at 252 x 252, 9 x 9 image tokens, as llama.cpp's Qwen2.5-VL preprocessing does.
SPEC = VisionSpec(
    patch_size=14,
    merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    min_pixels=56 * 56,
    max_pixels=256 * 256,
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
)
IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """One sample: ids after the shared prefix, labels (IGNORE on the prompt), images."""

    ids: list[int]
    labels: list[int]
    pixel_values: list[np.ndarray]
    grids: list[tuple[int, int, int]]


@dataclass(frozen=True)
class Batch:
    prefix: list[int]
    ids: np.ndarray  # (B, L), padded
    labels: np.ndarray  # (B, L)
    positions: np.ndarray  # (3, B, L) after the prefix
    pixel_values: np.ndarray  # every image's patches, in order
    grids: np.ndarray  # (images, 3)
    lesion_tokens: np.ndarray  # (B,) the overview token holding the lesion centre
    answers: np.ndarray  # (B,) 0 horizontal, 1 vertical
    cells: np.ndarray  # (B,) the lesion's grid cell, row-major


def split_prefix(tokenizer, sample: Sample) -> tuple[list[int], list[str]]:
    """The ids every sample shares (the system turn and the start of the user's), and the rest."""
    first = sample.pieces[0].text
    cut = first.index("<|vision_start|>")
    return tokenizer.encode(first[:cut], add_special_tokens=False), [first[cut:]]


def encode(tokenizer, sample: Sample, image_token_id: int, first_turn_only=False) -> Encoded:
    """Ids and labels after the shared prefix, each image pad widened to its tokens."""
    pixel_values, grids = [], []
    for rgb in sample.images:
        feeds, grid = image_inputs(rgb, SPEC)
        pixel_values.append(feeds["pixel_values"])
        grids.append(grid)
    widths = [g[1] * g[2] // SPEC.merge_size**2 for g in grids]
    used = 0
    ids: list[int] = []
    labels: list[int] = []
    _, rest = split_prefix(tokenizer, sample)
    pieces = [(rest[0], False), *((p.text, p.trained) for p in sample.pieces[1:])]
    if first_turn_only:
        pieces = pieces[:3]  # the first prompt, the call, its end
    for text, trained in pieces:
        for token in tokenizer.encode(text, add_special_tokens=False):
            run = [token]
            if token == image_token_id:
                run, used = [token] * widths[used], used + 1
            ids += run
            labels += run if trained else [IGNORE] * len(run)
    return Encoded(ids, labels, pixel_values[:used], grids[:used])


def lesion_token(case: LookCase, grid: tuple[int, int, int]) -> int:
    """The overview's merged token that holds the lesion's centre (raster order)."""
    side = grid[2] // SPEC.merge_size  # tokens per row
    per_shown = grid[2] * SPEC.patch_size / SHOWN  # encoded pixels per shown pixel
    token_px = SPEC.patch_size * SPEC.merge_size
    x, y = (case.col + 0.5) * CELL * per_shown, (case.row + 0.5) * CELL * per_shown
    return int(y // token_px) * side + int(x // token_px)


def collate(
    prefix: list[int], items: list[Encoded], cases: list[LookCase], image_token_id: int, pad: int
) -> Batch:
    length = max(len(e.ids) for e in items)
    ids = np.full((len(items), length), pad, np.int64)
    labels = np.full((len(items), length), IGNORE, np.int64)
    positions = np.zeros((3, len(items), length), np.int64)
    for row, item in enumerate(items):
        ids[row, : len(item.ids)] = item.ids
        labels[row, : len(item.labels)] = item.labels
        where = mrope_positions(item.ids, len(prefix), image_token_id, item.grids, SPEC.merge_size)
        positions[:, row, : len(item.ids)] = where
        tail = length - len(item.ids)  # padding: positions go on (its tokens are not trained)
        positions[:, row, len(item.ids) :] = where[:, -1:] + 1 + np.arange(tail)
    return Batch(
        prefix=prefix,
        ids=ids,
        labels=labels,
        positions=positions,
        pixel_values=np.concatenate([p for e in items for p in e.pixel_values]),
        grids=np.array([g for e in items for g in e.grids], np.int64),
        lesion_tokens=np.array([lesion_token(c, items[0].grids[0]) for c in cases]),
        answers=np.array([0 if c.answer == "horizontal" else 1 for c in cases]),
        cells=np.array([c.row * GRID + c.col for c in cases]),
    )
