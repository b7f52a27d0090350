"""Multi-turn cost: our incremental session vs llama-cpp-python's stock Qwen25VLChatHandler, which
resets the context and re-encodes every image on every turn.

    .venv/bin/python benchmarks/multiturn.py GGUF_DIR [--turns 6] [--size 512]

GGUF_DIR is an `edge-agent export gguf` folder (the tiny model: `edge-agent export tiny-vlm` then
`export gguf ... --quant q8_0 --pre-tokenizer qwen2`). Each turn adds one SIZE x SIZE image and a
line of text, then the model writes a Zoom-in call forced by the same grammar on both sides, with
the same token budget. Prints prompt tokens evaluated per turn and the wall-time ratio. Not a test.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_agent.llama_sampler import ReplySampler, Sampling
from edge_agent.mtmd import MultimodalModel

SYSTEM = "You are a medical imaging assistant. Reply with a Zoom-in call."
GRAMMAR = (
    'root ::= "<think>" [a-z ]{0,24} "</think> Action: Zoom-in\\n```json\\n[{\\"index\\": 0, '
    '\\"bbox_2d\\": [" n ", " n ", " n ", " n "]}]\\n```"\n'
    "n ::= [1-9] [0-9]{0,2}"
)
REPLY_TOKENS = 48


def images(count: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def ours(model_dir: Path, pictures: list[np.ndarray]) -> list[tuple[int, float]]:
    """One session: each turn evaluates its own image and text, then decodes the reply."""
    with MultimodalModel(
        model_dir / "model-q8_0.gguf", model_dir / "mmproj-f16.gguf", n_ctx=16384
    ) as model:
        n_past, pending, out = 0, "", []
        for turn, picture in enumerate(pictures):
            start = time.perf_counter()
            head = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" if turn == 0 else pending
            text = (
                f"{head}<|im_start|>user\nImage {turn}: {model.marker}<|im_end|>\n"
                "<|im_start|>assistant\n"
            )
            chunks = model.tokenize(text, [picture])
            added = sum(model.token_counts(chunks))
            n_past = model.eval_chunks(chunks, n_past)
            model.free(chunks)
            with ReplySampler(model.llama, GRAMMAR, Sampling()) as sampler:
                for _ in range(REPLY_TOKENS):
                    token = sampler.sample()
                    if model.is_end(token):
                        break
                    n_past = model.eval_token(token, n_past)
            pending = "<|im_end|>\n"
            out.append((added, time.perf_counter() - start))
        return out


def stock(model_dir: Path, pictures: list[np.ndarray]) -> list[tuple[int, float]]:
    """The stock handler: the whole conversation is sent again each turn."""
    from llama_cpp import Llama, LlamaGrammar
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler

    handler = Qwen25VLChatHandler(clip_model_path=str(model_dir / "mmproj-f16.gguf"), verbose=False)
    llama = Llama(
        model_path=str(model_dir / "model-q8_0.gguf"),
        chat_handler=handler,
        n_ctx=16384,
        verbose=False,
    )
    grammar = LlamaGrammar.from_string(GRAMMAR, verbose=False)
    messages: list[dict] = [{"role": "system", "content": SYSTEM}]
    out = []
    try:
        for turn, picture in enumerate(pictures):
            png = base64.b64encode(cv2.imencode(".png", picture)[1].tobytes()).decode()
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"Image {turn}: "},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                    ],
                }
            )
            start = time.perf_counter()
            reply = llama.create_chat_completion(
                messages=messages, grammar=grammar, max_tokens=REPLY_TOKENS, temperature=0.0
            )
            out.append((reply["usage"]["prompt_tokens"], time.perf_counter() - start))
            messages.append(
                {"role": "assistant", "content": reply["choices"][0]["message"]["content"]}
            )
    finally:
        llama.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf_dir", type=Path)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    pictures = images(args.turns, args.size)
    a, b = ours(args.gguf_dir, pictures), stock(args.gguf_dir, pictures)
    print(f"{args.turns} turns, one {args.size}x{args.size} image each, reply <= {REPLY_TOKENS}")
    print(f"{'turn':>4}{'ours: prompt tok':>18}{'s':>8}{'stock: prompt tok':>19}{'s':>8}")
    for turn, ((ta, sa), (tb, sb)) in enumerate(zip(a, b, strict=True), 1):
        print(f"{turn:>4}{ta:>18}{sa:>8.2f}{tb:>19}{sb:>8.2f}")
    total_a, total_b = sum(s for _, s in a), sum(s for _, s in b)
    print(
        f"total: ours {total_a:.2f} s, stock {total_b:.2f} s, stock/ours {total_b / total_a:.1f}x"
    )


if __name__ == "__main__":
    main()
