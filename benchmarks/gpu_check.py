"""The measuring half of benchmarks/gpu.sh: each model run once per back end into an .npz (its
outputs and its median milliseconds), and a comparison of two such files.

    gpu_check.py sam2 EXPORT_DIR --provider cpu|cuda|tensorrt --out F.npz
    gpu_check.py locate MODEL_DIR --provider ... --out F.npz
    gpu_check.py llm ONNX_LLM_DIR --provider ... --out F.npz    (decoder logits + vision encoder)
    gpu_check.py llama MODEL.gguf --gpu-layers N --out F.npz    (whichever llama_cpp is importable)
    gpu_check.py read STUDY MODEL OUT_DIR [--provider P | --gpu-layers N] --out F.npz
        (MODEL: a .gguf in an `export gguf` folder, or an onnx-llm folder)
    gpu_check.py sam2-checkpoint FILE.pt [--tiny]             (prints its export overrides)
    gpu_check.py slim-sdist LLAMA_SDIST.tar.gz OUT.tar.gz
    gpu_check.py compare CPU.npz OTHER.npz --label TEXT
    gpu_check.py trt-shapes ONNX_LLM_DIR decoder|vision         (`export tensorrt` arguments)

The same fixed inputs on every back end, so the outputs compare element by element: logits and
embeddings by their largest absolute difference (and that relative to the largest value), masks
by IoU, tokens by how many match. Not a test; run by benchmarks/gpu.sh."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BOX = np.array([[60.0, 70.0, 190.0, 200.0]])  # on the 256 x 256 test image
PROMPT = "<|im_start|>user\nIs there a hypodense liver lesion? Answer briefly.<|im_end|>\n"
NEW_TOKENS = 16


def test_image(side: int = 256) -> np.ndarray:
    """A grey disc on a gradient with noise, RGB: the same pixels for every back end."""
    y, x = np.mgrid[:side, :side]
    grey = 40 + 0.2 * x + np.random.default_rng(0).normal(0, 4, (side, side))
    grey[(x - side * 0.45) ** 2 + (y - side * 0.5) ** 2 < (side * 0.2) ** 2] = 200
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def timed(action: Callable[[], object], runs: int) -> tuple[object, float]:
    """The result of the first (warm-up) call and the median ms of `runs` more."""
    result = action()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return result, statistics.median(times)


def runtime(provider: str):
    from tools.onnx_runtime import RuntimeSettings

    return RuntimeSettings(providers=(provider,))


def run_sam2(folder: Path, provider: str, runs: int) -> dict:
    from tools.sam_onnx import SamOnnx

    model = SamOnnx(folder, runtime(provider))
    try:
        pixels = test_image()
        embedding, ms = timed(lambda: model.embed(pixels), runs)
        decoded = model.decode(embedding, BOX)
        masks, _ = model.masks(embedding, BOX)
        return {
            "ms": ms,
            **{f"embedding_{k}": v for k, v in embedding.features.items()},
            "logits": decoded.logits,
            "mask": masks[0],
        }
    finally:
        model.close()


def run_locate(folder: Path, provider: str, runs: int) -> dict:
    from tools.locate_model import LocateModel

    model = LocateModel(folder, runtime(provider))
    try:
        prompt = next(iter(model.manifest.prompts))
        prediction, ms = timed(lambda: model.predict(test_image(), prompt), runs)
        return {
            "ms": ms,
            "probability": prediction.probability,
            "mask": prediction.probability > 0.5,
        }
    finally:
        model.close()


def run_llm(folder: Path, provider: str, runs: int) -> dict:
    """Prefill of a prompt, then greedy decoding with the KV cache; the vision encoder apart."""
    from edge_agent.onnx_decoder import KvCache, OnnxDecoder, OnnxVision

    decoder = OnnxDecoder(folder, runtime(provider))
    vision = OnnxVision(decoder, runtime(provider))
    try:
        ids = decoder.tokenize(PROMPT)

        def turn() -> tuple[np.ndarray, list[int]]:
            cache = KvCache(decoder.shape)
            rows = [decoder.forward(ids, cache)[-1]]
            tokens = []
            for _ in range(NEW_TOKENS):
                tokens.append(int(np.argmax(rows[-1])))
                rows.append(decoder.forward([tokens[-1]], cache)[-1])
            return np.stack(rows), tokens

        (logits, tokens), ms = timed(turn, runs)
        (embeds, _), vision_ms = timed(lambda: vision.encode(test_image()), runs)
        return {"ms": ms, "vision_ms": vision_ms, "logits": logits, "tokens": np.array(tokens),
                "image_embeds": embeds}  # fmt: skip
    finally:
        vision.close()
        decoder.close()


def run_llama(gguf: Path, gpu_layers: int, runs: int) -> dict:
    """The same prompt and greedy tokens through the llama_cpp on sys.path (CPU or CUDA build)."""
    from llama_cpp import Llama

    model = Llama(
        model_path=str(gguf), n_gpu_layers=gpu_layers, n_ctx=512, logits_all=True, verbose=False
    )
    try:
        ids = model.tokenize(PROMPT.encode(), add_bos=False, special=True)

        def turn() -> tuple[np.ndarray, list[int]]:
            model.reset()
            model.eval(ids)
            rows, tokens = [np.array(model.scores[model.n_tokens - 1])], []
            for _ in range(NEW_TOKENS):
                tokens.append(int(np.argmax(rows[-1])))
                model.eval([tokens[-1]])
                rows.append(np.array(model.scores[model.n_tokens - 1]))
            return np.stack(rows), tokens

        (logits, tokens), ms = timed(turn, runs)
        return {"ms": ms, "logits": logits, "tokens": np.array(tokens)}
    finally:
        model.close()


def run_read(study: Path, model: Path, provider: str, gpu_layers: int, out: Path) -> dict:
    """One read of `study` by the tiny model: llama.cpp (a .gguf and the mmproj its folder's
    manifest lists) with `gpu_layers` offloaded, or the ONNX folder on `provider`; the steps,
    the answer, the time."""
    from dataclasses import replace

    from edge_agent.config import Config, PolicySettings
    from edge_agent.gguf_model import mmproj_of
    from edge_agent.policies.llama_cpp import LlamaCppSettings
    from edge_agent.policies.onnx_trt import OnnxTrtSettings
    from edge_agent.read import read_study

    if model.suffix == ".gguf":
        mmproj = mmproj_of(model.parent)
        llama = LlamaCppSettings(str(model), str(mmproj), n_gpu_layers=gpu_layers)
        policy = PolicySettings(name="llama_cpp", llama_cpp=llama)
    else:
        onnx = OnnxTrtSettings(model_dir=str(model), runtime=runtime(provider))
        policy = PolicySettings(name="onnx_trt", onnx_trt=onnx)
    config = replace(Config(), policy=policy)
    start = time.perf_counter()
    result = read_study(study, out, config)
    seconds = time.perf_counter() - start
    trajectory = result.trajectory
    steps = [f"{s.tool}({json.dumps(s.arguments, sort_keys=True)})" for s in trajectory.steps]
    answer = trajectory.answer.text if trajectory.answer else ""
    return {"ms": seconds * 1000, "steps": np.array(steps or [""]), "answer": np.array([answer])}


def sam2_checkpoint(path: Path, tiny: bool) -> list[str]:
    """Random SAM2 hiera-t weights (latency does not depend on them); the `export onnx sam2`
    overrides that go with them (`tiny`: the test suite's 256 px model)."""
    from tests.support import TINY_SAM2, save_random_sam2

    return save_random_sam2(path, TINY_SAM2 if tiny else ())


SDIST_SKIPS = ("/.git/", "/vendor/llama.cpp/models/", "/vendor/llama.cpp/docs/")


def slim_sdist(source: Path, target: Path) -> None:
    """The llama-cpp-python sdist without what its build never reads (a git pack, llama.cpp's
    test vocabularies and docs): 77 MB -> 13 MB for 0.3.36, small enough to carry along."""
    import tarfile

    with tarfile.open(source) as whole, tarfile.open(target, "w:gz") as slim:
        for member in whole:
            name = member.name + ("/" if member.isdir() else "")
            if not any(skip in name for skip in SDIST_SKIPS):
                slim.addfile(member, whole.extractfile(member) if member.isfile() else None)


def compare(reference: Path, other: Path, label: str) -> list[str]:
    """One line per output: its difference from the reference, then the speed ratio."""
    ref, got = np.load(reference), np.load(other)
    lines = []
    for name in ref.files:
        if name.endswith("ms") or name not in got.files:
            continue
        a, b = ref[name], got[name]
        if a.dtype.kind in "US" or name == "tokens":  # text, token ids: how many are the same
            same = sum(x == y for x, y in zip(a, b, strict=False))
            lines.append(f"{label} {name}: {same}/{max(a.size, b.size)} the same as CPU")
        elif a.shape != b.shape:
            lines.append(f"{label} {name}: shape {b.shape} vs CPU {a.shape} MISMATCH")
        elif a.dtype == bool:
            union = np.logical_or(a, b).sum()
            iou = float(np.logical_and(a, b).sum() / union) if union else 1.0
            lines.append(f"{label} {name}: IoU {iou:.4f} with CPU")
        else:
            diff = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
            scale = float(np.max(np.abs(a))) if a.size else 0.0
            lines.append(
                f"{label} {name}: max |diff| {diff:.3g} (largest |value| {scale:.3g}, "
                f"relative {diff / scale if scale else 0.0:.2g})"
            )
    for name in (n for n in ref.files if n.endswith("ms") and n in got.files):
        what = name.removesuffix("ms").removesuffix("_") or "run"
        lines.append(
            f"{label} {what}: {float(got[name]):.1f} ms vs CPU {float(ref[name]):.1f} ms, "
            f"speed-up {float(ref[name]) / float(got[name]):.2f}x"
        )
    return lines


def trt_shapes(folder: Path, part: str) -> list[str]:
    """`export tensorrt` arguments for the onnx-llm decoder or vision encoder: every dynamic axis
    sized by its name, from the manifest. The decoder's KV-cache profile is tuned for a decode
    step (one new token after 512 cached) and accepts prefill chunks of up to 256 tokens after
    1 .. context-256 cached tokens (a range starts at 1: `export tensorrt` takes no empty axis)."""
    import onnx

    from export.tensorrt import graph_inputs

    manifest = json.loads((folder / "manifest.json").read_text())
    path = folder / manifest[part]["file"]
    ranges = dim_ranges(manifest)
    args = [str(path)]
    for graph_input in graph_inputs(onnx.load(str(path), load_external_data=False)):
        if not graph_input.dynamic:
            continue
        unknown = [d for d in graph_input.shape if not isinstance(d, int) and d not in ranges]
        if unknown:
            raise SystemExit(f"{path.name}: no size for the axes {unknown} of {graph_input.name}")
        shapes = [
            "x".join(str(ranges[d][k] if isinstance(d, str) else d) for d in graph_input.shape)
            for k in range(3)
        ]
        args += ["--shape", f"{graph_input.name}={':'.join(shapes)}"]
    return args


def dim_ranges(manifest: dict) -> dict[str, tuple[int, int, int]]:
    """min, opt, max of each named axis of the onnx-llm graphs."""
    context = min(int(manifest["decoder"].get("context_length") or 4096), 4096)
    vision = manifest["vision"]["spec"]
    patch, merge = int(vision["patch_size"]), int(vision["merge_size"])
    most, least = vision["max_pixels"] // patch**2, vision["min_pixels"] // patch**2
    per_window = (vision["window_size"] // patch) ** 2
    windows = -(-most // per_window) * 2 + 1  # partial windows at the edges of a long image
    return {
        "batch_size": (1, 1, 1),
        "sequence_length": (1, 1, 256),
        "past_sequence_length": (1, 512, context - 256),
        "total_sequence_length": (2, 513, context),
        "image_tokens": (1, most // merge**2, 4 * most // merge**2),
        "patches": (least, most, most),
        "merged_patches": (least // merge**2, most // merge**2, most // merge**2),
        "images": (2, 2, 2),  # one image per call: cu_seqlens holds 0 and its end
        "windows": (2, windows, windows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kinds = ("sam2", "locate", "llm", "llama", "read", "compare", "trt-shapes", "sam2-checkpoint",
             "slim-sdist")  # fmt: skip
    parser.add_argument("what", choices=kinds)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda", "tensorrt"))
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--label", default="")
    parser.add_argument("--tiny", action="store_true", help="sam2-checkpoint: the 256 px model")
    args = parser.parse_args()
    if args.what == "compare":
        print("\n".join(compare(*args.paths[:2], args.label)))
        return
    if args.what == "trt-shapes":
        print(" ".join(trt_shapes(args.paths[0], str(args.paths[1]))))
        return
    if args.what == "slim-sdist":
        slim_sdist(*args.paths[:2])
        return
    if args.what == "sam2-checkpoint":
        print(" ".join(sam2_checkpoint(args.paths[0], args.tiny)))
        return
    runners = {"sam2": run_sam2, "locate": run_locate, "llm": run_llm}
    if args.what == "llama":
        result = run_llama(args.paths[0], args.gpu_layers, args.runs)
    elif args.what == "read":
        study, model, out = args.paths[:3]
        result = run_read(study, model, args.provider, args.gpu_layers, out)
    else:
        result = runners[args.what](args.paths[0], args.provider, args.runs)
    np.savez(args.out, **result)
    where = f"{args.gpu_layers} GPU layers" if args.what == "llama" else args.provider
    print(f"{args.what} on {where}: {float(result['ms']):.1f} ms")


if __name__ == "__main__":
    main()
