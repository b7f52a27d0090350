"""Small case sets for the evaluation tests: VQA images, a site list, runs to compare."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support import ct_copies


def write_image(path: Path, radius: int, size: int = 96) -> Path:
    """A grey square with one bright disc: something the protocol locates and measures."""
    image = np.full((size, size), 60, np.uint8)
    cv2.circle(image, (size // 2, size // 2), radius, 220, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def vqa_set(tmp_path: Path) -> Path:
    """VQA-RAD layout (image_name, question, answer, answer_type), images beside the file."""
    rows = []
    for i in range(3):
        write_image(tmp_path / "vqa" / "images" / f"img{i}.png", 10 + 4 * i)
        rows.append(
            {
                "qid": f"vqa{i}",
                "image_name": f"img{i}.png",
                "question": "Is there a bright region?",
                "answer": "yes" if i else "bright disc",
                "answer_type": "CLOSED" if i else "OPEN",
            }
        )
    path = tmp_path / "vqa" / "vqa_rad.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture
def site_list(tmp_path: Path) -> Path:
    """A site case list: one CT study, one unreadable study folder, one row without question."""
    ct_copies(tmp_path / "site" / "ct", 1, "eval-site")
    broken = tmp_path / "site" / "broken"
    broken.mkdir()
    (broken / "0001.dcm").write_bytes(b"not a DICOM file at all")
    path = tmp_path / "site" / "cases.csv"
    path.write_text(
        "id,study,question,expected,measurement,value,unit,tolerance\n"
        "ct1,ct,How large is the largest region?,,long axis,20,mm,5\n"
        "unreadable,broken,Is there a lesion?,no,,,,\n"
        "noquestion,ct,,yes,,,,\n"
    )
    return path
