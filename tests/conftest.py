"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.sample import write_sample_study
from tests.support import override_args, run_cli, save_random_sam2


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


@pytest.fixture(scope="session")
def sam_checkpoint(tmp_path_factory) -> Path:
    """A random-weight SAM2 checkpoint in the format SAM2's own releases use."""
    path = tmp_path_factory.mktemp("sam2") / "tiny.pt"
    save_random_sam2(path)
    return path


@pytest.fixture(scope="session")
def sam_onnx(sam_checkpoint, tmp_path_factory) -> Path:
    """`edge-agent export onnx sam2 --int8` of that checkpoint, as a user runs it."""
    out = tmp_path_factory.mktemp("sam2-onnx") / "out"
    done = run_cli(
        "export", "onnx", "sam2", "--checkpoint", sam_checkpoint, "--config", "sam2.1_hiera_t",
        "--out", out, "--int8", *override_args(),
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
