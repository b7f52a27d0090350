"""benchmarks/multiturn.py's llama-server side: a chat completion is read by what the server says
it evaluated and reused, the table sets it beside ours and the stock handler, and (where
benchmarks/build_llama_server.sh has built the binary) a real server continues a conversation
from its cache with the prompt our session writes."""

from __future__ import annotations

import gc
import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.llama_server import (
    MARKER,
    LlamaServer,
    binary,
    chat,
    loopback_json,
    parse_turn,
    rendered,
)
from benchmarks.multiturn import (
    GRAMMAR,
    N_CTX,
    REPLY_TOKENS,
    SYSTEM,
    images,
    ours,
    table,
    turn_text,
)
from tests.peers import free_port

# the shape of a llama-server /v1/chat/completions reply (tools/server/README.md, "Timings")
REPLY = {
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
    ],
    "usage": {"prompt_tokens": 420, "completion_tokens": 30, "total_tokens": 450},
    "timings": {
        "cache_n": 380,
        "prompt_n": 40,
        "prompt_ms": 12.5,
        "prompt_per_token_ms": 0.31,
        "predicted_n": 30,
        "predicted_ms": 60.0,
    },
}


def test_a_reply_is_read_by_what_the_server_says_it_evaluated_and_reused():
    turn = parse_turn(REPLY, seconds=0.2)
    assert (turn.evaluated, turn.cached) == (40, 380)
    assert (turn.prompt_ms, turn.decode_ms, turn.seconds) == (12.5, 60.0, 0.2)
    assert turn.reply == "ok"


def test_a_reply_without_timings_is_an_error_not_zero_tokens():
    bare = {key: value for key, value in REPLY.items() if key != "timings"}
    with pytest.raises(ValueError, match="reported no timings"):
        parse_turn(bare, seconds=0.2)


def test_the_table_sets_the_server_beside_ours_and_stock_with_the_ratios():
    a = [(300, 0.5), (100, 0.25)]
    b = [(300, 0.5, 76), (700, 1.5, 150)]
    c = [parse_turn(REPLY, 0.25), parse_turn(REPLY, 1.0)]
    lines = table(a, b, c)
    assert lines[0].split() == [
        "turn", "ours:", "eval", "s", "stock:", "eval", "s", "(stock", "says)",
        "server:", "eval", "cached", "s", "(its", "s)",
    ]  # fmt: skip
    assert lines[2].split() == [
        "2", "100", "0.25", "700", "1.50", "150", "40", "380", "1.00", "0.07",
    ]  # fmt: skip
    assert lines[3] == (
        "total: ours 400 tokens 0.75 s, stock 1000 tokens 2.00 s, server 80 tokens 1.25 s "
        "(its own 0.14 s)"
    )
    assert lines[4] == (
        "stock/ours 2.50x tokens; ours/server 5.00x tokens; 0.60x seconds; 5.17x its own seconds"
    )
    without = table(a, b, None)
    assert "server" not in "\n".join(without)
    assert without[-1] == "stock/ours 2.50x tokens"


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = json.dumps({"path": self.path, "got": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_):
        pass


def test_requests_to_the_server_never_go_through_a_proxy(monkeypatch):
    """An HTTP proxy in the environment (none listening at it) is not where a loopback request
    goes: it reaches the server on 127.0.0.1."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=echo.serve_forever, daemon=True)
    thread.start()
    try:
        answer = loopback_json(echo.server_address[1], "/v1/chat", {"n": 1})
    finally:
        echo.shutdown()
        echo.server_close()
        thread.join()
    assert answer == {"path": "/v1/chat", "got": {"n": 1}}


def test_a_server_that_cannot_start_leaves_no_file_open(tmp_path):
    not_executable = tmp_path / "llama-server"
    not_executable.write_text("#!/bin/sh\n")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(PermissionError):
            LlamaServer(not_executable, tmp_path, n_ctx=512, threads=1, threads_batch=1)
        gc.collect()  # a file left open is closed here, with a ResourceWarning
    assert [str(w.message) for w in seen if w.category is ResourceWarning] == []


@pytest.fixture(scope="module")
def server_binary():
    path = binary()
    if path is None:
        pytest.skip(
            "no llama-server at build/llama-server/cmake/bin or $LLAMA_SERVER: "
            "benchmarks/build_llama_server.sh builds it (minutes; .ci/run does)"
        )
    return path


def test_llama_server_continues_the_conversation_from_its_cache(server_binary, exported):
    pictures = images(2, 128)
    mine, threads = ours(exported, pictures, threads=1)
    with LlamaServer(
        server_binary, exported, n_ctx=N_CTX, threads=threads[0], threads_batch=threads[1]
    ) as server:
        # the same first-turn text as our session, so both sides pay for the same prompt
        assert rendered(server, SYSTEM, pictures[0]) == turn_text(0, MARKER)
        first, second = chat(server, SYSTEM, pictures, GRAMMAR, REPLY_TOKENS)
    assert first.cached == 0
    assert first.evaluated == mine[0][0]
    assert first.reply.startswith("<think>") and "Action: Zoom-in" in first.reply
    # the second request re-sends the whole conversation; the server reuses the first turn and
    # evaluates at most what our session adds plus the first reply (re-read from its text)
    assert second.cached >= first.evaluated
    assert mine[1][0] <= second.evaluated <= mine[1][0] + REPLY_TOKENS
