"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.sample import write_sample_study
from tests.support import run_cli


@pytest.fixture
def sample_study(tmp_path: Path) -> Path:
    return write_sample_study(tmp_path / "study")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "hf"
    done = run_cli("export", "tiny-vlm", folder, "--seed", "0")
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="session")
def exported(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "out"
    done = run_cli(
        "export", "gguf", tiny, "--out", out, "--quant", "q8_0", "--pre-tokenizer", "qwen2"
    )
    assert done.returncode == 0, done.stderr
    assert "pre-tokenizer forced to 'qwen2'" in done.stderr  # the override is never silent
    return out


@pytest.fixture(scope="session")
def tiny_locate(tmp_path_factory) -> Path:
    """A tiny random-weight locate model folder, made as a user makes it (`export tiny-locate`)."""
    folder = tmp_path_factory.mktemp("locate") / "tiny-locate"
    done = run_cli("export", "tiny-locate", folder, "--seed", "0")
    assert done.returncode == 0, done.stderr
    assert "prompts: liver" in done.stdout
    return folder


# A SAM2 small enough for tests: the real sam2.1_hiera_t config, fewer and narrower blocks, 256 px.
TINY_SAM2 = (
    "++model.image_size=256",
    "++model.image_encoder.trunk.embed_dim=48",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[384,192,96,48]",
)


@pytest.fixture(scope="session")
def sam_checkpoint(tmp_path_factory) -> Path:
    """A random-weight SAM2 checkpoint in the format SAM2's own releases use."""
    import torch

    from export.sam2_model import build_sam2_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam2") / "tiny.pt"
    torch.save({"model": build_sam2_model("sam2.1_hiera_t", None, TINY_SAM2).state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def sam_onnx(sam_checkpoint, tmp_path_factory) -> Path:
    """`edge-agent export onnx sam2 --int8` of that checkpoint, as a user runs it."""
    out = tmp_path_factory.mktemp("sam2-onnx") / "out"
    overrides = [arg for value in TINY_SAM2 for arg in ("--override", value)]
    done = run_cli(
        "export", "onnx", "sam2", "--checkpoint", sam_checkpoint, "--config", "sam2.1_hiera_t",
        "--out", out, "--int8", *overrides,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="session")
def onnx_llm(tiny, tmp_path_factory) -> Path:
    """The tiny checkpoint's text decoder in ONNX, written and verified by the CLI."""
    out = tmp_path_factory.mktemp("onnx-llm") / "out"
    done = run_cli("export", "onnx-llm", tiny, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out
