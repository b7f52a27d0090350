"""The text-prompted locate model on ONNX Runtime (CPU): exported by our code, run by the tool."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from export.locate_onnx import BIOMEDPARSE_MEAN, BIOMEDPARSE_STD, LocateExport, export_locate
from imaging.checksum import sha256_file
from imaging.errors import ModelLoadError
from imaging.records import to_plain
from tests.support import phantom_frame
from tools.locate import LocateSettings
from tools.locate_model import ImageInput, Thresholds
from tools.toolbox import ToolSettings, default_toolbox
from tools.workspace import Workspace

SPACING = (0.7, 0.7)


class BrightFinder(torch.nn.Module):
    """The contract's interface with a known answer: the prompt's first value picks bright (+1)
    or nothing (-1); the mask comes out at half the input grid, like a real decoder's."""

    def forward(self, image, text_embedding):
        grey = image[:, :1] * BIOMEDPARSE_STD[0] + BIOMEDPARSE_MEAN[0]  # undo the normalisation
        gain = text_embedding[:, 0, :1, None, None]
        mask = gain * (grey - 200.0) / 8.0
        return torch.nn.functional.avg_pool2d(mask, 2), gain.reshape(-1, 1) * 10.0


@pytest.fixture(scope="module")
def bright_model(tmp_path_factory):
    embeddings = np.zeros((2, 3, 8), np.float32)
    embeddings[0, 0, 0], embeddings[1, 0, 0] = 1.0, -1.0
    request = LocateExport(
        out_dir=tmp_path_factory.mktemp("bright") / "model",
        name="bright-finder",
        prompts=("bright spot", "dark spot"),
        image=ImageInput(size=(64, 64), mean=BIOMEDPARSE_MEAN, std=BIOMEDPARSE_STD),
        encoder="hand-made",
        thresholds=Thresholds(mask=0.5, score=0.5),
    )
    export_locate(BrightFinder(), embeddings, request)
    return request.out_dir


@pytest.fixture
def abdomen():
    """Air around a 40 HU body with a 700 HU bone disc (r 8 mm) centred at pixel (170, 150)."""
    rows, cols = np.mgrid[:256, :256]
    values = np.full((256, 256), -1000.0)
    values[((cols - 128) / 110) ** 2 + ((rows - 128) / 90) ** 2 <= 1] = 40
    bone = np.hypot((cols + 0.5 - 170) * SPACING[1], (rows + 0.5 - 150) * SPACING[0]) <= 8
    values[bone] = 700
    return phantom_frame(values, SPACING)


def toolbox_with(folder):
    return default_toolbox(ToolSettings(locate=LocateSettings(model=str(folder))))


def test_the_model_finds_the_bright_disc_in_the_shown_images_coordinates(bright_model, abdomen):
    workspace = Workspace()
    workspace.show(abdomen, max_side=100)  # shown 100 px, model input 64 px, mask 32 px
    toolbox = toolbox_with(bright_model)
    found = toolbox.call("locate", {"index": 0, "captions": ["Bright  Spot"]}, workspace)
    toolbox.close()
    [top] = to_plain(found.payload)["candidates"]
    x1, y1, x2, y2 = top["bbox_2d"]
    scale = 100 / 256
    assert x1 < 170 * scale < x2 and y1 < 150 * scale < y2
    assert (x2 - x1) == pytest.approx(2 * 8 / SPACING[1] * scale, abs=3)
    assert top["area"] == pytest.approx(math.pi * 8**2, rel=0.35)  # in mm², via the shown grid
    assert top["method"].startswith("bright-finder (locate.onnx, ONNX Runtime cpu)")
    assert to_plain(found.payload)["model"]["sha256"] == sha256_file(bright_model / "locate.onnx")
    assert found.image.index == 1 and found.image.size == (100, 100)


def test_a_low_score_reports_no_candidates_and_says_why(bright_model, abdomen):
    workspace = Workspace()
    workspace.show(abdomen)
    toolbox = toolbox_with(bright_model)
    found = toolbox.call("locate", {"index": 0, "captions": ["dark spot"]}, workspace)
    toolbox.close()
    assert to_plain(found.payload)["candidates"] == []
    assert to_plain(found.payload)["scores"] == {"dark spot": 0.0}
    assert "'dark spot' 0" in found.text and "No candidate regions" in found.text


def test_captions_the_model_lacks_fall_back_to_hu_classes_or_are_refused(bright_model, abdomen):
    workspace = Workspace()
    workspace.show(abdomen)
    toolbox = toolbox_with(bright_model)
    found = toolbox.call(
        "locate", {"index": 0, "captions": ["a bright spot here", "bone", "pancreas"]}, workspace
    )
    said = toolbox.call("locate", {"index": 0, "captions": ["pancreas"]}, workspace)
    toolbox.close()
    methods = [c["method"] for c in to_plain(found.payload)["candidates"]]
    assert methods[0].startswith("bright-finder") and "HU / intensity classes" in methods[1]
    assert [c["class"] for c in to_plain(found.payload)["candidates"]] == ["bright spot", "bone"]
    assert to_plain(found.payload)["unsupported"] == ["pancreas"]
    assert said.image is None and not said.error
    assert "cannot find 'pancreas'" in said.text and "bright-finder knows: bright spot" in said.text


def test_a_corrupt_model_stops_the_toolbox_from_being_built(bright_model, tmp_path):
    broken = shutil.copytree(bright_model, tmp_path / "broken")
    graph = broken / "locate.onnx"
    graph.write_bytes(graph.read_bytes()[:100])
    with pytest.raises(
        ModelLoadError, match=r"does not match the SHA-256 in its manifest.*corrupt or replaced"
    ):
        toolbox_with(broken)
    _rehash(broken)  # a manifest that agrees with the damaged file: ONNX Runtime refuses it
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        toolbox_with(broken)
    with pytest.raises(ModelLoadError, match=r"has no manifest\.json"):
        toolbox_with(tmp_path)


def test_a_graph_off_the_contract_is_refused_with_its_names(bright_model, tmp_path):
    other = shutil.copytree(bright_model, tmp_path / "other")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg", [x], [y])
    onnx.save(helper.make_model(graph), other / "locate.onnx")
    _rehash(other)
    with pytest.raises(ModelLoadError, match=r"lacks image, text_embedding, mask_logits, score"):
        toolbox_with(other)


def test_a_manifest_cannot_point_outside_its_folder(bright_model, tmp_path):
    moved = shutil.copytree(bright_model, tmp_path / "moved")
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["model"] = "../elsewhere/locate.onnx"
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="must be a plain name inside the model folder"):
        toolbox_with(moved)


def _rehash(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        entry["sha256"] = sha256_file(folder / entry["name"])
        entry["bytes"] = (folder / entry["name"]).stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
