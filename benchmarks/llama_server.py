"""llama.cpp's own `llama-server` as the third side of benchmarks/multiturn.py: started on loopback
with the same GGUF, mmproj, context size, threads and batch sizes as our session, driven through
its OpenAI-compatible /v1/chat/completions with `cache_prompt`, and read back by what the server
says it evaluated (`timings.prompt_n`) and reused (`timings.cache_n`) on every turn.

The binary comes from benchmarks/build_llama_server.sh (the llama.cpp vendored in the installed
llama-cpp-python), or $LLAMA_SERVER.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tests.peers import free_port, wait_for

# Requests go to 127.0.0.1 only: no HTTP(S)_PROXY from the environment, which urllib's default
# opener would send even a loopback request through.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))

BUILT = Path(__file__).resolve().parents[1] / "build" / "llama-server" / "cmake" / "bin"
MARKER = "<__media__>"  # mtmd's default marker: the server renders prompts the way we write them


@dataclass(frozen=True)
class ServerTurn:
    """One chat completion as the server reports it, and the client's wall time around it."""

    evaluated: int  # prompt tokens the server evaluated (images included)
    cached: int  # prompt tokens it reused from the previous request
    prompt_ms: float
    decode_ms: float
    seconds: float
    reply: str


def binary() -> Path | None:
    """$LLAMA_SERVER, else build_llama_server.sh's output; None when neither is there."""
    path = Path(os.environ.get("LLAMA_SERVER") or BUILT / "llama-server")
    return path if executable(path) else None


def executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def data_url(rgb: np.ndarray) -> str:
    """An RGB image as the PNG data URL an OpenAI-style chat request carries."""
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def user_turn(turn: int, rgb: np.ndarray) -> dict:
    """Turn `turn`'s message: the text then the image, as both chat-completion sides send it."""
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": f"Image {turn}: "},
            {"type": "image_url", "image_url": {"url": data_url(rgb)}},
        ],
    }


def parse_turn(body: dict, seconds: float) -> ServerTurn:
    """A /v1/chat/completions response -> what the server says it did. A response without
    `timings` (a server that does not report them) is an error, not a zero."""
    if "timings" not in body:
        raise ValueError(f"llama-server reported no timings: {json.dumps(body)[:200]}")
    timings = body["timings"]
    return ServerTurn(
        evaluated=int(timings["prompt_n"]),
        cached=int(timings["cache_n"]),
        prompt_ms=float(timings["prompt_ms"]),
        decode_ms=float(timings["predicted_ms"]),
        seconds=seconds,
        reply=body["choices"][0]["message"]["content"],
    )


def command(
    server: Path, model_dir: Path, port: int, *, n_ctx: int, threads: int, threads_batch: int
) -> list[str]:
    """The server's command line: loopback only, one slot of `n_ctx`, our session's settings
    (batch 512, f16 KV cache), no web UI, replies kept whole (the thought stays in the content,
    as our session keeps it in the cache). Flash attention: llama.cpp's `auto`, which our vision
    encoder runs with (the server has one setting for both models; our text model has it off)."""
    return [
        str(server),
        "--model", str(model_dir / "model-q8_0.gguf"),
        "--mmproj", str(model_dir / "mmproj-f16.gguf"),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--ctx-size", str(n_ctx),
        "--parallel", "1",
        "--threads", str(threads),
        "--threads-batch", str(threads_batch),
        "--batch-size", "512",
        "--ubatch-size", "512",
        "--flash-attn", "auto",
        "--n-gpu-layers", "0",
        "--no-mmproj-offload",
        "--reasoning-format", "none",
        "--no-webui",
    ]  # fmt: skip


class LlamaServer:
    """One llama-server process on a free loopback port; its log goes to a temporary file,
    shown when it fails to start."""

    def __init__(
        self, server: Path, model_dir: Path, *, n_ctx: int, threads: int, threads_batch: int
    ):
        self.port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        argv = command(
            server, model_dir, self.port, n_ctx=n_ctx, threads=threads, threads_batch=threads_batch
        )
        try:
            # its own session: a Ctrl-C meant for the benchmark reaches it only through close()
            self._process = subprocess.Popen(
                argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LLAMA_MEDIA_MARKER": MARKER},
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise
        try:
            wait_for(self._ready, 120, "llama-server's /health")
        except BaseException:
            self.close()
            raise

    def _ready(self) -> bool:
        if self._process.poll() is not None:
            raise RuntimeError(f"llama-server exited ({self._process.returncode}):\n{self.log()}")
        try:
            with _LOOPBACK.open(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-3000:]

    def slot_context(self) -> int:
        """The context one slot may fill: llama-server caps it at the model's training context."""
        return int(self.post("/props")["default_generation_settings"]["n_ctx"])

    def post(self, path: str, body: dict | None = None) -> dict:
        """POST `body` as JSON, or GET when there is none."""
        return loopback_json(self.port, path, body)

    def close(self) -> None:
        """Stop the server, killed if it does not stop on SIGTERM or the wait is interrupted."""
        try:
            if self._process.poll() is None:
                self._process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=10)
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._log.close()

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def loopback_json(port: int, path: str, body: dict | None = None) -> dict:
    """POST `body` as JSON to 127.0.0.1:`port`, or GET when there is none; never via a proxy."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with _LOOPBACK.open(request, timeout=600) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"llama-server {path}: {exc.code} {exc.read()[:500]!r}") from None


def chat(
    server: LlamaServer, system: str, pictures: list[np.ndarray], grammar: str, max_tokens: int
) -> list[ServerTurn]:
    """The conversation sent whole each turn, as a chat client does, with `cache_prompt`: the
    server reuses the longest prefix it still holds. Greedy, under `grammar`."""
    messages: list[dict] = [{"role": "system", "content": system}]
    out = []
    for turn, picture in enumerate(pictures):
        messages.append(user_turn(turn, picture))
        body = {
            "messages": messages,
            "grammar": grammar,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "cache_prompt": True,
        }
        start = time.perf_counter()
        reply = server.post("/v1/chat/completions", body)
        out.append(parse_turn(reply, time.perf_counter() - start))
        messages.append({"role": "assistant", "content": out[-1].reply})
    return out


def rendered(server: LlamaServer, system: str, picture: np.ndarray) -> str:
    """The server's chat template applied to the first turn (the image as the marker)."""
    messages = [{"role": "system", "content": system}, user_turn(0, picture)]
    return server.post("/apply-template", {"messages": messages})["prompt"]
