"""Tool latency on CPU: the SAM2 image encoder in PyTorch eager vs ONNX Runtime fp32 vs ONNX
Runtime int8 (dynamic), the box decoder per box, and zoom_in; one process, same input.

    .venv/bin/python benchmarks/tools.py [--config sam2.1_hiera_t] [--checkpoint PT]
        [--export DIR] [--runs 7] [--threads N]

Without --checkpoint the model has random weights (latency does not depend on them). Without
--export the model is exported (with --int8) into a temporary folder first. Each round runs every
encoder once, in turn, so load from other processes falls on all of them alike; each encoder's
min/median/max and its per-round ratio to PyTorch (min/median/max) are printed with the goals
(median ORT fp32 <= 0.6x, int8 <= 0.4x, zoom <= 20 ms). On a shared machine `--threads 1`
gives the steadier ratio. Not a test."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.spread import spread
from export.sam2_model import BoxDecoder, ImageEncoder, build_sam2_model
from export.sam_onnx import Sam2Request, export_sam2
from imaging.frame import Frame, Geometry, ImageRef
from tools.onnx_runtime import RuntimeSettings
from tools.sam_onnx import SamOnnx, preprocess, scale_boxes
from tools.workspace import Workspace
from tools.zoom import zoom_in

SIDE = 1024
GOALS = {"ort fp32": 0.6, "ort int8": 0.4}
ZOOM_GOAL_MS = 20.0
BOX = (300.0, 340.0, 620.0, 700.0)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def test_image() -> np.ndarray:
    y, x = np.mgrid[:SIDE, :SIDE]
    image = 40 + 0.1 * x + np.random.default_rng(0).normal(0, 4, (SIDE, SIDE))
    image[(x - 460) ** 2 + (y - 520) ** 2 < 150**2] = 200
    return np.clip(image, 0, 255).astype(np.uint8)


def encoders(model, folder: Path, pixels, threads: int) -> tuple[dict, dict[str, SamOnnx]]:
    """Each encoder from the same shown pixels, pre-processing included (the tool's path)."""
    torch_encoder = ImageEncoder(model)
    image = model.image_size
    cpu = RuntimeSettings(("cpu",), threads=threads)
    onnx = {kind: SamOnnx(folder, cpu, encoder=kind) for kind in ("fp32", "int8")}
    mean, std = onnx["fp32"].mean, onnx["fp32"].std

    def eager():
        with torch.no_grad():
            return torch_encoder(torch.from_numpy(preprocess(pixels, image, mean, std)))

    return {
        "pytorch eager": eager,
        "ort fp32": lambda: onnx["fp32"].embed(pixels),
        "ort int8": lambda: onnx["int8"].embed(pixels),
    }, onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="sam2.1_hiera_t")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument(
        "--export", type=Path, help="`export onnx sam2 --int8` of the same checkpoint"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="per library; 0: each one's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_sam2_model(args.config, args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="sam2-bench-") as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:  # the export must hold these same random weights
            checkpoint = Path(scratch) / "random.pt"
            torch.save({"model": model.state_dict()}, checkpoint)
        folder = args.export
        if folder is None:
            folder = Path(scratch) / "onnx"
            start = time.perf_counter()
            done = export_sam2(Sam2Request(args.config, checkpoint, folder, int8=True))
            print(f"exported {args.config} in {time.perf_counter() - start:.0f} s")
            for result in done.verify["results"]:
                shown = {k: v for k, v in result.items() if k not in ("name", "failed")}
                print(f"verify {result['name']}: {shown}")
        run(model, folder, args.runs, args.threads)


def run(model, folder: Path, runs: int, threads: int) -> None:
    pixels = test_image()
    timers, onnx = encoders(model, folder, pixels, threads)
    print(
        f"CPU: {os.cpu_count()} cores; torch {torch.__version__} threads {torch.get_num_threads()}"
        f", onnxruntime threads {threads or 'default'}; {model.image_size}x{model.image_size} "
        f"input; {runs} interleaved rounds after 1 warm-up"
    )
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for action in timers.values():
        action()  # warm-up: first-call allocations and lazy initialisation
    for _ in range(runs):
        for name, action in timers.items():
            samples[name].append(timed(action))
    eager = samples["pytorch eager"]
    print(f"{'encoder':<22}{'min/median/max ms':>22}   ratio to PyTorch min/median/max")
    for name, values in samples.items():
        # Each round's ratio against the PyTorch run of the same round: load from other
        # processes falls on both alike, so the spread is the encoder's, not the machine's.
        ratios = [value / base for value, base in zip(values, eager, strict=True)]
        goal = GOALS.get(name)
        median = statistics.median(ratios)
        verdict = "" if goal is None else (" goal met" if median <= goal else " goal NOT met")
        limit = "" if goal is None else f" (goal <= {goal}x)"
        print(f"encoder {name:<14}{spread(values, '.0f'):>22}   {spread(ratios)}x{limit}{verdict}")
    decoders(model, onnx["fp32"], pixels, runs)
    zoom(runs)
    for session in onnx.values():
        session.close()


def decoders(model, onnx: SamOnnx, pixels: np.ndarray, runs: int) -> None:
    embedding = onnx.embed(pixels)
    box = np.array([BOX])
    torch_decoder = BoxDecoder(model)
    features = [torch.from_numpy(embedding.features[name]) for name in embedding.features]
    scaled = torch.from_numpy(scale_boxes(box, embedding.size, model.image_size))

    def eager():
        with torch.no_grad():
            return torch_decoder(*features, scaled)

    for name, action in (("pytorch eager", eager), ("ort", lambda: onnx.decode(embedding, box))):
        action()
        value = statistics.median(timed(action) for _ in range(runs * 3))
        print(f"decoder {name:<14} {value:8.1f} ms per box (mask logits, before upsampling)")
    upsample = statistics.median(timed(lambda: onnx.masks(embedding, box)) for _ in range(runs * 3))
    print(f"decoder ort + upsample  {upsample:6.1f} ms per box (the segment tool's mask)")


def zoom(runs: int) -> None:
    frame = Frame(
        ref=ImageRef("1.2.3", 1),
        pixels=test_image().astype(np.int16),
        geometry=Geometry(pixel_spacing=(0.5, 0.5)),
        modality="CT",
    )
    workspace = Workspace()
    workspace.show(frame)
    arguments = {"index": 0, "bbox_2d": list(BOX)}
    zoom_in(arguments, workspace, size=512)
    value = statistics.median(
        timed(lambda: zoom_in(arguments, workspace, size=512)) for _ in range(runs * 3)
    )
    verdict = "goal met" if value <= ZOOM_GOAL_MS else "goal NOT met"
    print(f"zoom_in 1024x1024 -> 512  {value:6.1f} ms (goal <= {ZOOM_GOAL_MS:g} ms) {verdict}")


if __name__ == "__main__":
    main()
