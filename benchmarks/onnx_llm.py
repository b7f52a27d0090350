"""One text turn on the ONNX decoder (ONNX Runtime, CPU) vs the same checkpoint in transformers:
prefill a prompt, then greedy decoding with the KV cache, the same token ids on both sides.

    .venv/bin/python benchmarks/onnx_llm.py ONNX_DIR HF_DIR [--prompt-tokens 600] [--new 64]

ONNX_DIR is an `edge-agent export onnx-llm` folder, HF_DIR the checkpoint it came from (the tiny
model: `edge-agent export tiny-vlm DIR`). Prints prefill ms, decode ms per token and the
transformers / ONNX wall-time ratio; checks both sides chose the same tokens. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_agent.onnx_decoder import KvCache, OnnxDecoder
from tools.onnx_runtime import RuntimeSettings

CHUNK = 256  # the policy's default prefill_chunk


def prompt_ids(decoder: OnnxDecoder, count: int) -> list[int]:
    text = "<|im_start|>user\nIs there a hypodense liver lesion? Image 0 (width 512, height 512)"
    ids = decoder.tokenize(text)
    return (ids * (count // len(ids) + 1))[:count]


def onnx_turn(decoder: OnnxDecoder, ids: list[int], new: int) -> tuple[float, float, list[int]]:
    cache = KvCache(decoder.shape)
    start = time.perf_counter()
    for at in range(0, len(ids), CHUNK):
        logits = decoder.forward(ids[at : at + CHUNK], cache)[-1]
    prefill = time.perf_counter() - start
    tokens, start = [], time.perf_counter()
    for _ in range(new):
        tokens.append(int(np.argmax(logits)))
        logits = decoder.forward([tokens[-1]], cache)[-1]
    return prefill, time.perf_counter() - start, tokens


def torch_turn(model, ids: list[int], new: int) -> tuple[float, float, list[int]]:
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        start = time.perf_counter()
        out = model(input_ids=torch.tensor([ids]), cache=cache, use_cache=True)
        prefill = time.perf_counter() - start
        tokens, start = [], time.perf_counter()
        for _ in range(new):
            tokens.append(int(out.logits[0, -1].argmax()))
            out = model(input_ids=torch.tensor([[tokens[-1]]]), cache=out.cache, use_cache=True)
    return prefill, time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx_dir", type=Path)
    parser.add_argument("hf_dir", type=Path)
    parser.add_argument("--prompt-tokens", type=int, default=600)
    parser.add_argument("--new", type=int, default=64)
    args = parser.parse_args()
    decoder = OnnxDecoder(args.onnx_dir, RuntimeSettings(providers=("cpu",)))
    try:
        ids = prompt_ids(decoder, args.prompt_tokens)
        onnx_turn(decoder, ids[:16], 2)  # warm-up: ONNX Runtime plans on the first run
        ours = onnx_turn(decoder, ids, args.new)
    finally:
        decoder.close()
    from export.reference import load_hf

    model = load_hf(args.hf_dir)
    torch_turn(model, ids[:16], 2)  # warm-up, as on the ONNX side
    theirs = torch_turn(model, ids, args.new)
    for name, (prefill, decode, _) in (("onnx runtime", ours), ("transformers", theirs)):
        print(
            f"{name:<13} prefill {len(ids)} tokens {prefill * 1000:8.1f} ms, "
            f"decode {decode * 1000 / args.new:6.2f} ms/token, turn {(prefill + decode):.3f} s"
        )
    print(f"same tokens: {ours[2] == theirs[2]}")
    print(f"transformers / onnx runtime: {(theirs[0] + theirs[1]) / (ours[0] + ours[1]):.2f}x")


if __name__ == "__main__":
    main()
