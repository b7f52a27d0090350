"""Multi-turn cost: our incremental session vs llama-cpp-python's stock Qwen25VLChatHandler, which
resets the context and re-encodes every image on every turn.

    .venv/bin/python benchmarks/multiturn.py GGUF_DIR [--turns 6] [--size 512]

GGUF_DIR is an `edge-agent export gguf` folder (the tiny model: `edge-agent export tiny-vlm` then
`export gguf ... --quant q8_0 --pre-tokenizer qwen2`). Each turn adds one SIZE x SIZE image and a
line of text, then the model writes a Zoom-in call forced by the same grammar on both sides, with
the same token budget. Prints, per turn, the prompt tokens each side had llama.cpp evaluate (its
own counter, read after every turn: image tokens included, unlike the stock handler's
`usage.prompt_tokens`, which is llama.cpp's position counter and moves ~18 per image) and the
wall-time ratio. Then the first turn of `--reads` reads on one loaded model, with the trained
Ophiuchus system prompt: evaluated from an empty cache each read (as before), and continuing from
the prefix kept at the head of the cache (as reads do now); interleaved, min/median/max. Not a
test.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_agent.formats import load_profile
from edge_agent.formats.chat import chat_text
from edge_agent.formats.turns import Message
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
            model.resume()  # llama.cpp's counters from zero; the cache stays
            n_past = model.eval_chunks(chunks, n_past)
            added = model.prompt_evaluated()
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


def stock(model_dir: Path, pictures: list[np.ndarray]) -> list[tuple[int, float, int]]:
    """The stock handler: the whole conversation is sent again each turn. Per turn: prompt
    tokens llama.cpp evaluated, seconds, and the handler's own `prompt_tokens`."""
    import llama_cpp
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
            llama_cpp.llama_synchronize(llama.ctx)
            llama_cpp.llama_perf_context_reset(llama.ctx)
            reply = llama.create_chat_completion(
                messages=messages, grammar=grammar, max_tokens=REPLY_TOKENS, temperature=0.0
            )
            took = time.perf_counter() - start
            llama_cpp.llama_synchronize(llama.ctx)
            evaluated = llama_cpp.llama_perf_context(llama.ctx).n_p_eval
            out.append((evaluated, took, reply["usage"]["prompt_tokens"]))
            messages.append(
                {"role": "assistant", "content": reply["choices"][0]["message"]["content"]}
            )
    finally:
        llama.close()
    return out


def first_turns(model_dir: Path, picture: np.ndarray, reads: int) -> dict[str, list]:
    """The first turn of each read, as `ModelSession` builds it (the trained system prompt, then
    the user turn with its image): prefill from an empty cache, or after the kept prefix.
    Rounds interleave the two ways; each entry is (tokens evaluated, seconds)."""
    profile = load_profile("ophiuchus-v1")
    out: dict[str, list] = {"every read": [], "kept prefix": []}
    with MultimodalModel(
        model_dir / "model-q8_0.gguf", model_dir / "mmproj-f16.gguf", n_ctx=8192
    ) as model:
        head = chat_text([Message("system", profile.system)], profile.placeholder, model.marker)
        user = chat_text(
            [Message("user", f"{model.marker}\nIs there a lesion?")], "<image>", model.marker
        )
        rest = user + "<|im_start|>assistant\n"
        model.keep_prefix(head)  # loading the model: the prefix once
        for _ in range(reads):
            for way in out:
                start = time.perf_counter()
                if way == "every read":
                    model.clear()
                    text, n_past = head + rest, 0
                else:
                    n_past, _ = model.keep_prefix(head)
                    text = rest
                chunks = model.tokenize(text, [picture])
                model.eval_chunks(chunks, n_past)
                model.free(chunks)
                out[way].append((model.prompt_evaluated(), time.perf_counter() - start))
                if way == "every read":
                    model.keep_prefix(head)  # the next "kept" round starts as a loaded model
    return out


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f}/{statistics.median(values):.3f}/{max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf_dir", type=Path)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="ours and stock, interleaved")
    args = parser.parse_args()
    pictures = images(args.turns, args.size)
    ratios = []
    for _ in range(args.rounds):
        a, b = ours(args.gguf_dir, pictures), stock(args.gguf_dir, pictures)
        ratios.append(sum(s for _, s, _ in b) / sum(s for _, s in a))
    print(f"{args.turns} turns, one {args.size}x{args.size} image each, reply <= {REPLY_TOKENS}")
    print("prompt tokens evaluated: llama.cpp's counter (n_p_eval) per turn, images included")
    print(f"{'turn':>4}{'ours: eval':>12}{'s':>8}{'stock: eval':>13}{'s':>8}{'(stock says)':>14}")
    for turn, ((ta, sa), (tb, sb, said)) in enumerate(zip(a, b, strict=True), 1):
        print(f"{turn:>4}{ta:>12}{sa:>8.2f}{tb:>13}{sb:>8.2f}{said:>14}")
    total_a, total_b = sum(s for _, s in a), sum(s for _, s, _ in b)
    tokens_a, tokens_b = sum(t for t, _ in a), sum(t for t, _, _ in b)
    print(
        f"last round: ours {total_a:.2f} s, stock {total_b:.2f} s; evaluated: ours {tokens_a}, "
        f"stock {tokens_b}, stock/ours {tokens_b / tokens_a:.1f}x"
    )
    print(f"stock/ours wall time over {args.rounds} rounds (min/median/max): {_spread(ratios)}x")
    first = first_turns(args.gguf_dir, pictures[0], args.reads)
    print(f"\nfirst turn of a read, trained system prompt, {args.reads} reads (min/median/max)")
    for way, runs in first.items():
        tokens = sorted({t for t, _ in runs})
        print(f"{way:>12}: evaluated {tokens} tokens, prefill s {_spread([s for _, s in runs])}")
    prefill = [
        every / kept
        for (_, every), (_, kept) in zip(first["every read"], first["kept prefix"], strict=True)
    ]
    print(f"every read / kept prefix: {_spread(prefill)}x")


if __name__ == "__main__":
    main()
