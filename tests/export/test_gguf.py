"""HF checkpoint -> GGUF + mmproj -> verify -> llama.cpp answers: the real path on a tiny model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tests.support import run_cli


def test_the_tiny_checkpoint_is_deterministic(tiny, tmp_path):
    again = tmp_path / "again"
    assert run_cli("export", "tiny-vlm", again, "--seed", "0").returncode == 0
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny / name).read_bytes(), name


def test_export_writes_what_the_manifest_says(exported, tiny):
    manifest = json.loads((exported / "manifest.json").read_text())
    names = {f["name"] for f in manifest["files"]}
    assert names == {"model-f16.gguf", "model-q8_0.gguf", "mmproj-f16.gguf"}
    for entry in manifest["files"]:
        data = (exported / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"] and data[:4] == b"GGUF"
    weights = next(f for f in manifest["source"]["files"] if f["name"] == "model.safetensors")
    digest = hashlib.sha256((tiny / "model.safetensors").read_bytes()).hexdigest()
    assert weights["sha256"] == digest
    assert manifest["runtime"]["llama_cpp_python"] == manifest["converter"]["llama_cpp_python"]
    assert manifest["pre_tokenizer_override"] == "qwen2"
    assert manifest["image"]["image_token_id"] is not None


def test_verify_passes_for_f16_and_q8_0(exported, tiny):
    done = run_cli("export", "verify", exported, "--hf", tiny)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((exported / "verify.json").read_text())
    by_name = {r["name"]: r for r in report["results"]}
    assert by_name["f16"]["cosine"] >= 0.999
    assert by_name["q8_0"]["top1"] >= 0.95
    assert by_name["image (f16)"]["cosine"] >= 0.99 and by_name["image (f16)"]["tokens"] > 0


def test_verify_fails_against_a_different_checkpoint(exported, tmp_path):
    other = tmp_path / "other"
    assert run_cli("export", "tiny-vlm", other, "--seed", "1").returncode == 0
    done = run_cli("export", "verify", exported, "--hf", other)
    assert done.returncode == 1 and "FAIL" in done.stdout
    assert json.loads((exported / "verify.json").read_text())["passed"] is False


def test_the_gguf_and_mmproj_answer_an_image_prompt(exported):
    from edge_agent.mtmd import MultimodalModel
    from export.reference import probe_image

    with MultimodalModel(
        exported / "model-q8_0.gguf", exported / "mmproj-f16.gguf", n_ctx=1024
    ) as model:
        # mtmd wraps the image in <|vision_start|> ... <|vision_end|> itself
        prompt = (
            f"<|im_start|>user\n{model.marker}What is shown?<|im_end|>\n<|im_start|>assistant\n"
        )
        answer = model.generate(prompt, [probe_image()], max_tokens=8)
        assert model.prompt_evaluated() > 16  # the image's tokens went into the context
    assert isinstance(answer, str) and answer  # random weights: some text, any text


def test_an_unknown_tokenizer_needs_an_explicit_pre_tokenizer(tiny, tmp_path):
    done = run_cli("export", "gguf", tiny, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert "does not recognise this tokenizer's pre-tokenizer" in done.stderr
    assert "--pre-tokenizer" in done.stderr and not (tmp_path / "out").exists()


def test_a_truncated_checkpoint_fails_cleanly(tiny, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    done = run_cli("export", "gguf", broken, "--out", tmp_path / "out", "--pre-tokenizer", "qwen2")
    assert done.returncode == 2 and "model.safetensors is truncated" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_an_existing_output_folder_is_kept_without_force(tiny, exported):
    before = (exported / "manifest.json").read_bytes()
    done = run_cli("export", "gguf", tiny, "--out", exported, "--pre-tokenizer", "qwen2")
    assert done.returncode == 2 and "pass --force" in done.stderr
    assert (exported / "manifest.json").read_bytes() == before


def test_an_unsupported_architecture_is_named(tiny, tmp_path):
    other = tmp_path / "llama"
    shutil.copytree(tiny, other)
    config = json.loads((other / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (other / "config.json").write_text(json.dumps(config))
    done = run_cli("export", "gguf", other, "--out", tmp_path / "out")
    assert done.returncode == 2 and "LlamaForCausalLM" in done.stderr


def test_a_pre_tokenizer_the_converter_does_not_know_is_refused_and_loses_nothing(
    exported, tiny, tmp_path
):
    kept = tmp_path / "kept"
    shutil.copytree(exported, kept)
    before = (kept / "manifest.json").read_bytes()
    done = run_cli(
        "export", "gguf", tiny, "--out", kept, "--force", "--pre-tokenizer", "nonsense"
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--pre-tokenizer 'nonsense' is not one llama.cpp's converter knows" in done.stderr
    known = done.stderr.split("known: ", 1)[1].split(", ")
    assert "qwen2" in known and "llama-bpe" in known  # read from the converter that runs
    assert (kept / "manifest.json").read_bytes() == before  # --force replaced nothing


def test_verify_names_a_model_llama_cpp_cannot_load(exported, tiny, tmp_path):
    """A converter that knows a pre-tokenizer its runtime does not (a --llama-cpp-dir of another
    llama.cpp) writes a model the runtime refuses: verify says so in one line."""
    converter = Path(json.loads((exported / "manifest.json").read_text())["converter"]["path"])
    other = tmp_path / "llama.cpp"
    shutil.copytree(converter, other)
    base = other / "conversion" / "base.py"
    source = base.read_text()
    assert "        res = None\n" in source
    base.write_text(
        source.replace(
            "        res = None\n",
            '        res = None\n        if chkhsh == "":\n            res = "edge-unknown"\n',
            1,
        )
    )
    out = tmp_path / "out"
    done = run_cli(
        "export", "gguf", tiny, "--out", out, "--llama-cpp-dir", other,
        "--pre-tokenizer", "edge-unknown",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # the check took the name from this converter
    done = run_cli("export", "verify", out, "--hf", tiny)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "llama.cpp cannot load" in done.stderr and "model-f16.gguf" in done.stderr
