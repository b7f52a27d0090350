"""Multi-turn cost: our incremental session vs llama-cpp-python's stock Qwen25VLChatHandler, which
resets the context and re-encodes every image on every turn, and vs llama.cpp's own
`llama-server` with `cache_prompt`, which reuses the longest prefix of the re-sent conversation.

    .venv/bin/python benchmarks/multiturn.py GGUF_DIR [--turns 6] [--size 512] [--threads N]
        [--server PATH]

GGUF_DIR is an `edge-agent export gguf` folder (the tiny model: `edge-agent export tiny-vlm` then
`export gguf ... --quant q8_0 --pre-tokenizer qwen2`). Each turn adds one SIZE x SIZE image and a
line of text, then the model writes a Zoom-in call forced by the same grammar on every side, with
the same token budget. Prints, per turn, the prompt tokens each side had llama.cpp evaluate (its
own counter, read after every turn: image tokens included, unlike the stock handler's
`usage.prompt_tokens`, which is llama.cpp's position counter and moves ~18 per image; for the
server, its `timings.prompt_n`, and `cache_n`, what it reused) and the wall time, per turn the
median of `--rounds` interleaved rounds, each ratio's spread over them (ours against the
server both by its wall time and by its own compute, prompt_ms + predicted_ms). The server
(benchmarks/build_llama_server.sh builds it; default: its output, or $LLAMA_SERVER) runs on
loopback with the same GGUF, mmproj, n_ctx, threads and batch sizes, one slot; the header says
whether its chat template renders the first turn as ours. Then the first turn of `--reads` reads
on one loaded model, with the trained Ophiuchus system prompt: evaluated from an empty cache each
read (as before), and continuing from the prefix kept at the head of the cache (as reads do now);
interleaved, min/median/max. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.llama_server import (
    MARKER,
    LlamaServer,
    ServerTurn,
    chat,
    executable,
    rendered,
    user_turn,
)
from benchmarks.llama_server import binary as server_binary
from benchmarks.spread import spread
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
N_CTX = 16384


def images(count: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def turn_text(turn: int, marker: str) -> str:
    """What our session adds for turn `turn` (after the previous reply's end)."""
    head = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" if turn == 0 else "<|im_end|>\n"
    return f"{head}<|im_start|>user\nImage {turn}: {marker}<|im_end|>\n<|im_start|>assistant\n"


def ours(
    model_dir: Path, pictures: list[np.ndarray], threads: int | None
) -> tuple[list[tuple[int, float]], tuple[int, int]]:
    """One session: each turn evaluates its own image and text, then decodes the reply. Also
    returns the threads llama.cpp used (generation, prompt batches)."""
    with MultimodalModel(
        model_dir / "model-q8_0.gguf", model_dir / "mmproj-f16.gguf", n_ctx=N_CTX, n_threads=threads
    ) as model:
        n_past, out = 0, []
        for turn, picture in enumerate(pictures):
            start = time.perf_counter()
            text = turn_text(turn, model.marker)
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
            out.append((added, time.perf_counter() - start))
        return out, (model.llama.n_threads, model.llama.n_threads_batch)


def stock(
    model_dir: Path, pictures: list[np.ndarray], threads: int | None
) -> list[tuple[int, float, int]]:
    """The stock handler: the whole conversation is sent again each turn. Per turn: prompt
    tokens llama.cpp evaluated, seconds, and the handler's own `prompt_tokens`."""
    import llama_cpp
    from llama_cpp import Llama, LlamaGrammar
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler

    handler = Qwen25VLChatHandler(clip_model_path=str(model_dir / "mmproj-f16.gguf"), verbose=False)
    llama = Llama(
        model_path=str(model_dir / "model-q8_0.gguf"),
        chat_handler=handler,
        n_ctx=N_CTX,
        n_threads=threads,
        verbose=False,
    )
    grammar = LlamaGrammar.from_string(GRAMMAR, verbose=False)
    messages: list[dict] = [{"role": "system", "content": SYSTEM}]
    out = []
    try:
        for turn, picture in enumerate(pictures):
            messages.append(user_turn(turn, picture))
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


def _median(rounds: list[list[tuple]]) -> list[tuple]:
    """Per turn: the tokens (the same every round), the median seconds, what follows them."""
    return [
        (turns[0][0], statistics.median(t[1] for t in turns), *turns[0][2:])
        for turns in zip(*rounds, strict=True)
    ]


def _median_server(rounds: list[list[ServerTurn]]) -> list[ServerTurn]:
    return [
        replace(
            turns[0],
            seconds=statistics.median(t.seconds for t in turns),
            prompt_ms=statistics.median(t.prompt_ms for t in turns),
            decode_ms=statistics.median(t.decode_ms for t in turns),
        )
        for turns in zip(*rounds, strict=True)
    ]


def _compute(turns: list[ServerTurn]) -> float:
    """Seconds the server says it spent evaluating and decoding (no HTTP, JSON or PNG)."""
    return sum(t.prompt_ms + t.decode_ms for t in turns) / 1000


def table(
    a: list[tuple[int, float]],
    b: list[tuple[int, float, int]],
    c: list[ServerTurn] | None,
) -> list[str]:
    """Per turn, each side's evaluated prompt tokens and seconds, then the totals and ratios."""
    head = f"{'turn':>4}{'ours: eval':>12}{'s':>8}{'stock: eval':>13}{'s':>8}{'(stock says)':>14}"
    lines = [head + (f"{'server: eval':>14}{'cached':>8}{'s':>8}{'(its s)':>9}" if c else "")]
    for turn, ((ta, sa), (tb, sb, said)) in enumerate(zip(a, b, strict=True)):
        line = f"{turn + 1:>4}{ta:>12}{sa:>8.2f}{tb:>13}{sb:>8.2f}{said:>14}"
        if c:
            t = c[turn]
            line += f"{t.evaluated:>14}{t.cached:>8}{t.seconds:>8.2f}"
            line += f"{(t.prompt_ms + t.decode_ms) / 1000:>9.2f}"
        lines.append(line)
    seconds = {"ours": sum(s for _, s in a), "stock": sum(s for _, s, _ in b)}
    tokens = {"ours": sum(t for t, _ in a), "stock": sum(t for t, _, _ in b)}
    if c:
        seconds["server"] = sum(t.seconds for t in c)
        tokens["server"] = sum(t.evaluated for t in c)
    lines.append(
        "total: "
        + ", ".join(f"{side} {tokens[side]} tokens {seconds[side]:.2f} s" for side in seconds)
        + (f" (its own {_compute(c):.2f} s)" if c else "")
    )
    ratios = [f"stock/ours {tokens['stock'] / tokens['ours']:.2f}x tokens"]
    if c:
        ratios.append(f"ours/server {tokens['ours'] / tokens['server']:.2f}x tokens")
        ratios.append(f"{seconds['ours'] / seconds['server']:.2f}x seconds")
        ratios.append(f"{seconds['ours'] / _compute(c):.2f}x its own seconds")
    lines.append("; ".join(ratios))
    return lines


def _server_round(
    path: Path, model_dir: Path, pictures: list[np.ndarray], threads: tuple[int, int]
) -> tuple[list[ServerTurn], str, int]:
    """A fresh llama-server (started outside the timing, as our model is loaded outside it):
    the conversation, the first turn as its chat template renders it, its slot's context."""
    with LlamaServer(
        path, model_dir, n_ctx=N_CTX, threads=threads[0], threads_batch=threads[1]
    ) as server:
        prompt, slot = rendered(server, SYSTEM, pictures[0]), server.slot_context()
        return chat(server, SYSTEM, pictures, GRAMMAR, REPLY_TOKENS), prompt, slot


def _refuse(message: str) -> None:
    """Bad arguments: one line, exit 2, before any model is loaded."""
    print(f"multiturn: {message}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf_dir", type=Path)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="the sides, interleaved")
    parser.add_argument("--threads", type=int, help="default: llama-cpp-python's")
    parser.add_argument(
        "--server", type=Path, default=server_binary(), help="llama-server (default: %(default)s)"
    )
    args = parser.parse_args()
    if args.server and not executable(args.server):
        _refuse(f"no executable llama-server at {args.server} (benchmarks/build_llama_server.sh)")
    pictures = images(args.turns, args.size)
    if args.rounds < 1:
        _refuse(f"--rounds must be 1 or more, not {args.rounds}")
    ratios: dict[str, list[float]] = {
        "stock/ours wall time": [],
        "ours/server wall time": [],
        "ours wall time/server's own compute": [],
    }
    rounds: dict[str, list] = {"ours": [], "stock": [], "server": []}
    prompt, slot = "", 0
    for _ in range(args.rounds):
        a, threads = ours(args.gguf_dir, pictures, args.threads)
        b = stock(args.gguf_dir, pictures, args.threads)
        rounds["ours"].append(a)
        rounds["stock"].append(b)
        mine = sum(s for _, s in a)
        ratios["stock/ours wall time"].append(sum(s for _, s, _ in b) / mine)
        if args.server:
            c, prompt, slot = _server_round(args.server, args.gguf_dir, pictures, threads)
            rounds["server"].append(c)
            ratios["ours/server wall time"].append(mine / sum(t.seconds for t in c))
            ratios["ours wall time/server's own compute"].append(mine / _compute(c))
    print(
        f"{args.turns} turns, one {args.size}x{args.size} image each, reply <= {REPLY_TOKENS}, "
        f"n_ctx {N_CTX}, threads {threads[0]} (prompt batches {threads[1]}), batch 512"
    )
    print(f"per turn: tokens evaluated and seconds, the median of {args.rounds} rounds;")
    print("evaluated: llama.cpp's counter (n_p_eval) for ours and stock, images included;")
    if args.server:
        print(f"llama-server {args.server}: one slot, cache_prompt;")
        print("  eval and cached: its timings.prompt_n and cache_n; (its s): its prompt_ms +")
        print("  predicted_ms; s: the client's wall time (each turn the whole conversation goes")
        print("  again as JSON, every image a base64 PNG the server decodes again);")
        print("  flash attention auto for both models (ours: auto for the vision encoder, off for")
        print("  the text model);")
        if slot != N_CTX:
            print(f"  its slot is capped at the model's training context, {slot} tokens;")
        print(
            "  its chat template renders turn 1 as ours does"
            if prompt == turn_text(0, MARKER)
            else f"  turn 1, ours: {turn_text(0, MARKER)!r}\n  turn 1, server: {prompt!r}"
        )
    else:
        print("no llama-server (benchmarks/build_llama_server.sh builds one): its side is left out")
    a, b = _median(rounds["ours"]), _median(rounds["stock"])
    c = _median_server(rounds["server"]) if rounds["server"] else None
    for line in table(a, b, c):
        print(line)
    for name, values in ratios.items():
        if values:
            print(f"{name} over {args.rounds} rounds (min/median/max): {spread(values, '.3f')}x")
    first = first_turns(args.gguf_dir, pictures[0], args.reads)
    print(f"\nfirst turn of a read, trained system prompt, {args.reads} reads (min/median/max)")
    for way, runs in first.items():
        tokens = sorted({t for t, _ in runs})
        prefill_s = spread([s for _, s in runs], ".3f")
        print(f"{way:>12}: evaluated {tokens} tokens, prefill s {prefill_s}")
    prefill = [
        every / kept
        for (_, every), (_, kept) in zip(first["every read"], first["kept prefix"], strict=True)
    ]
    print(f"every read / kept prefix: {spread(prefill, '.3f')}x")


if __name__ == "__main__":
    main()
