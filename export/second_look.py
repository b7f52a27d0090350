"""The "second look" task a reference agent is trained and checked on: a grey scan with texture
and one small bright lesion whose inner stripes run horizontally or vertically. The stripes are
one shown pixel wide (the Nyquist limit of the image the model is shown), so in the overview
they are a few pixels of one image token; a Zoom-in on the lesion shows them magnified about
thirteen times. Deterministic for a seed; written as a multiple-choice case set that
`edge-agent eval run` reads (PNG images + cases.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SOURCE = 224  # the scan's side in stored pixels
SHOWN = 112  # the side the reference agent is shown it at (its policy's image_size)
GRID = 4  # lesions sit on a GRID x GRID grid of the shown image (the coarse box grid)
CELL = SHOWN // GRID  # 28 shown pixels
LESION_RADIUS = 16  # source pixels (8 shown)
JITTER = 2  # source pixels of jitter around a cell centre, even (keeps the stripe phase)
RIM = 4  # source pixels of the bright frame
ZOOM_HALF = 10  # shown pixels: the taught zoom box is 20 x 20 around the cell centre
QUESTION = "A small bright lesion has a fine stripe pattern inside. Which way do its stripes run?"
OPTIONS = ("horizontal", "vertical")
LETTERS = "AB"


@dataclass(frozen=True)
class LookCase:
    id: str
    pixels: np.ndarray  # SOURCE x SOURCE uint8 grey
    row: int  # the lesion's grid cell
    col: int
    answer: str  # "horizontal" | "vertical"
    lesion_box: tuple[float, float, float, float]  # source pixels

    @property
    def letter(self) -> str:
        return LETTERS[OPTIONS.index(self.answer)]

    @property
    def zoom_box(self) -> list[int]:
        return make_box(self.row, self.col)

    @property
    def question(self) -> str:
        """As `edge-agent eval` asks a multiple-choice case (its `asked`)."""
        lines = [f"{LETTERS[i]}. {option}" for i, option in enumerate(OPTIONS)]
        return "\n".join([QUESTION, "Options:", *lines])


def make_box(row: int, col: int) -> list[int]:
    """The box taught for the Zoom-in, in shown pixels: the cell centre +- ZOOM_HALF."""
    x, y = col * CELL + CELL // 2, row * CELL + CELL // 2
    return [x - ZOOM_HALF, y - ZOOM_HALF, x + ZOOM_HALF, y + ZOOM_HALF]


def make_case(seed: int, number: int) -> LookCase:
    """Case `number` of the set for `seed`; the same pair always gives the same case."""
    rng = np.random.default_rng([seed, number])
    row, col = (int(v) for v in rng.integers(0, GRID, size=2))
    answer = OPTIONS[int(rng.integers(0, 2))]
    scale = SOURCE // SHOWN
    cx = (col * CELL + CELL // 2) * scale + 2 * int(rng.integers(-JITTER // 2, JITTER // 2 + 1))
    cy = (row * CELL + CELL // 2) * scale + 2 * int(rng.integers(-JITTER // 2, JITTER // 2 + 1))
    pixels = _background(rng)
    _paint_lesion(pixels, cx, cy, answer, rng)
    pixels = pixels.round().astype(np.uint8)
    r = LESION_RADIUS
    box = (float(cx - r), float(cy - r), float(cx + r), float(cy + r))
    return LookCase(f"look-{seed}-{number:05d}", pixels, row, col, answer, box)


def _background(rng: np.random.Generator) -> np.ndarray:
    """Smooth tissue-like texture plus fine noise, grey levels about 60-110, in a bright frame
    (a rim like bone's) that sets the automatic window, so the lesion is never saturated."""
    coarse = rng.normal(0.0, 1.0, (7, 7)).astype(np.float32)
    smooth = cv2.resize(coarse, (SOURCE, SOURCE), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0.0, 4.0, (SOURCE, SOURCE)).astype(np.float32)
    pixels = np.clip(85.0 + 12.0 * smooth + fine, 0, 255).astype(np.float32)
    pixels[:RIM], pixels[-RIM:], pixels[:, :RIM], pixels[:, -RIM:] = 250.0, 250.0, 250.0, 250.0
    return pixels


def _paint_lesion(pixels: np.ndarray, cx: int, cy: int, answer: str, rng) -> None:
    """A disc of stripes two source pixels wide (one shown pixel), aligned to even pixels so
    every shown row or column samples one stripe."""
    ys, xs = np.mgrid[0:SOURCE, 0:SOURCE]
    disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= LESION_RADIUS**2
    along = ys if answer == "horizontal" else xs
    bright = (along // 2) % 2 == 0
    high = float(rng.uniform(215, 240))
    low = float(rng.uniform(120, 145))
    pixels[disc] = np.where(bright[disc], high, low)
    np.clip(pixels, 0, 255, out=pixels)


def write_case_set(folder: Path, count: int, seed: int) -> Path:
    """PNG images and cases.json (multiple choice with the lesion's box) for `edge-agent eval`."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for number in range(count):
        case = make_case(seed, number)
        name = f"{case.id}.png"
        cv2.imwrite(str(images / name), case.pixels)
        rows.append(
            {
                "id": case.id,
                "image": f"images/{name}",
                "question": QUESTION,
                "options": list(OPTIONS),
                "answer_letter": case.letter,
                "group": "second-look",
                "lesion_box": list(case.lesion_box),
            }
        )
    path = folder / "cases.json"
    path.write_text(json.dumps(rows, indent=1))
    return path
