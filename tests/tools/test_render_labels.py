"""Labels burned into evidence images stay readable: none covers another."""

from __future__ import annotations

import numpy as np

from tools.render import draw_boxes, label_origin

# Three candidates side by side on a 128 px CT, as locate marked them on the sample study.
BOXES = [((41, 8), (79, 43)), ((72, 0), (107, 23)), ((13, 56), (29, 76))]


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_adjacent_boxes_do_not_cover_one_another():
    taken: list[tuple[int, int, int, int]] = []
    for box in BOXES:
        x, y = label_origin(box, (60, 10), (128, 128), taken)
        rect = (x, y - 10, x + 60, y)
        assert rect[0] >= 0 and rect[1] >= 0 and rect[2] <= 128 and rect[3] <= 128, rect
        assert not any(_overlap(rect, other) for other in taken), (rect, taken)
        taken.append(rect)


def test_draw_boxes_leaves_its_input_and_draws_each_label():
    pixels = np.zeros((128, 128), np.uint8)
    boxes = [
        ((x1, y1, x2 + 1, y2 + 1), f"{i} hyperdense")
        for i, ((x1, y1), (x2, y2)) in enumerate(BOXES, 1)
    ]
    drawn = draw_boxes(pixels, boxes)
    assert not pixels.any() and drawn.shape == (128, 128, 3)
    yellow = (drawn == (255, 220, 0)).all(axis=2)
    assert yellow.sum() > 3 * 60  # three boxes and three labels
