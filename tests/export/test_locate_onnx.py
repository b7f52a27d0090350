"""The locate exporter: the contract written into the manifest, faithful to torch, and nothing
left behind when a module does not follow the contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export.gguf import ExportError
from export.locate_onnx import LocateExport, build_tiny_locate, export_locate
from imaging.checksum import sha256_file
from tools.locate_model import FORMAT, ImageInput


def test_the_manifest_states_the_contract_and_matches_the_files(tiny_locate):
    manifest = json.loads((tiny_locate / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["model"] == "locate.onnx"
    assert manifest["image"]["name"] == "image" and manifest["image"]["size"] == [64, 64]
    assert manifest["outputs"] == {"mask": "mask_logits", "score": "score"}
    embeddings = np.load(tiny_locate / manifest["text"]["file"])
    assert (
        embeddings.shape
        == (len(manifest["prompts"]), 4, 32)
        == (
            len(manifest["prompts"]),
            manifest["text"]["tokens"],
            manifest["text"]["dim"],
        )
    )
    for entry in manifest["files"]:
        assert sha256_file(tiny_locate / entry["name"]) == entry["sha256"]
    assert manifest["verify"]["max_abs_diff_vs_torch"] <= 1e-3
    assert "mask_logits float32 [1,1,h,w]" in manifest["contract"]


class OneOutput(torch.nn.Module):
    def forward(self, image, text_embedding):
        return image[:, :1] * text_embedding.mean()


def test_a_module_off_the_contract_fails_before_export_and_leaves_nothing(tmp_path):
    request = LocateExport(
        out_dir=tmp_path / "out",
        name="bad",
        prompts=("liver",),
        image=ImageInput(size=(32, 32)),
        encoder="none",
    )
    with pytest.raises(ExportError, match="the locate contract needs"):
        export_locate(OneOutput(), np.zeros((1, 1, 8), np.float32), request)
    with pytest.raises(ExportError, match=r"embeddings must be \[prompts=1"):
        export_locate(OneOutput(), np.zeros((2, 1, 8), np.float32), request)
    assert not request.out_dir.exists()


def test_an_export_never_overwrites_a_folder_unasked(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty; pass --force"):
        build_tiny_locate(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"
