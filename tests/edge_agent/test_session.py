"""The LLM session core on a scripted back end: what a turn adds, the context check, the reply
loop and what the reply decides — with no model, so every number is known in advance."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest

from edge_agent.agent import Answer, Budget, PolicyError, ReadContext, ToolCall
from edge_agent.formats import format_for
from edge_agent.policies.session import AFTER_THOUGHT, END_OF_REPLY, ModelSession, Prompt
from edge_agent.usage import TurnUsage
from tests.support import phantom_frame
from tools.toolbox import ToolSettings, default_toolbox
from tools.workspace import Workspace

END = -1
MARKER = "<img>"
ZOOM = (
    '<think>look</think> Action: Zoom-in\n```json\n[{"index": 1, "bbox_2d": [1, 2, 30, 40]}]\n```'
)
ANSWER = "<think>seen</think> Action: Answer\n<answer>no lesion</answer>"


class Scripted:
    """A back end whose replies are given as text, one character a token; each image is 10
    tokens, each other character of the turn text one."""

    marker = MARKER

    def __init__(self, replies: list[str], *, n_ctx: int = 10_000, constrained: bool = True):
        self.replies = iter(replies)
        self.n_ctx = n_ctx
        self.constrained = constrained
        self.turns: list[tuple[str, int]] = []  # (text, images) each turn evaluated
        self.grammars: list[str | None] = []
        self.fed: list[int] = []
        self.forced: list[int] = []
        self.released = 0
        self.closed = False
        self.prefixes: list[str] = []  # each read's fixed head, evaluated (none kept here)

    def start(self, prefix: str) -> tuple[int, int]:
        self.prefixes.append(prefix)
        return len(prefix), len(prefix)

    @contextmanager
    def prompt(self, text: str, pictures: list[np.ndarray]) -> Iterator[Prompt]:
        image_tokens = 10 * len(pictures)
        try:
            yield Prompt(len(text) - len(MARKER) * len(pictures) + image_tokens, image_tokens, text)
        finally:
            self.released += 1

    def evaluate(self, prompt: Prompt) -> int:
        self.turns.append((prompt.handle, prompt.image_tokens // 10))
        return prompt.tokens

    @contextmanager
    def reply(self, gbnf: str | None):
        self.grammars.append(gbnf)
        yield _Reply(self, [ord(c) for c in next(self.replies)] + [END])

    def is_end(self, token: int) -> bool:
        return token == END

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def close(self) -> None:
        self.closed = True


class _Reply:
    def __init__(self, backend: Scripted, tokens: list[int]) -> None:
        self.backend, self.tokens = backend, iter(tokens)

    def next_token(self) -> int:
        return next(self.tokens)

    def feed(self, token: int) -> None:
        self.backend.fed.append(token)

    def force(self, token: int) -> None:
        self.backend.forced.append(token)
        self.feed(token)


@pytest.fixture
def context() -> ReadContext:
    workspace, toolbox = Workspace(), default_toolbox(ToolSettings())
    for value in (0, 50):
        workspace.show(phantom_frame(np.full((64, 64), value)), max_side=64)
    return ReadContext("Is there a lesion?", workspace, toolbox, Budget(max_new_tokens=200))


def test_each_turn_evaluates_only_what_it_adds_and_counts_the_cache(context):
    backend, streamed = Scripted([ZOOM, ANSWER]), []
    form = format_for(context)  # ophiuchus-v1: one image at turn 1, indices from 1
    session = ModelSession(backend, form, streamed.append)
    first = session.step(context)
    zoom = context.toolbox.call("zoom_in", dict(first.arguments), context.workspace)
    assert zoom.image is not None and len(context.workspace) == 3
    second = session.step(replace(context, observation=zoom))
    session.close()

    assert isinstance(first, ToolCall) and first.tool == "zoom_in"
    # trained index 1 is the one image shown at turn 1: workspace image 0 of the two originals
    # the raw crop the model was trained on: our zoom_in at the named image's own resolution
    assert first.arguments == {"index": 0, "bbox_2d": [1, 2, 30, 40], "scale": 1}
    assert first.thought == "look"
    assert isinstance(second, Answer) and second.text == "no lesion"
    assert second.findings[0].evidence == (2,)  # the newest image the model looked at
    (text1, images1), (text2, images2) = backend.turns
    # the system prompt is the read's fixed head: the back end starts from it, then the rest
    assert backend.prefixes == ["<|im_start|>system\n" + form.system_prompt() + "<|im_end|>\n"]
    text1 = backend.prefixes[0] + text1
    assert images1 == 1 and text1.startswith("<|im_start|>system\n### Guidance:")
    assert text1.count(MARKER) == 1 and "Is there a lesion?" in text1
    assert "The index of the given image is 1 (width: 64, height: 64)" in text1
    # the second turn: the end of the first reply, then only the new image and its sentence
    assert images2 == 1 and text2.startswith(END_OF_REPLY + "<|im_start|>user\n")
    assert text2.count(MARKER) == 1 and "system" not in text2
    assert "The index of the given image is 2 (" in text2
    u1, u2 = first.usage, second.usage
    assert isinstance(u1, TurnUsage) and isinstance(u2, TurnUsage)
    assert (u1.past, u1.images, u1.image_tokens, u1.generated) == (0, 1, 10, len(ZOOM))
    assert u1.prompt_tokens == u1.prompt_evaluated == len(text1) - len(MARKER) + 10
    assert u2.past == u1.prompt_tokens + u1.generated
    assert (u2.images, u2.image_tokens, u2.generated) == (1, 10, len(ANSWER))
    assert u1.prefill_ms >= 0 and u1.decode_ms >= 0
    assert u1.prompt_profile == u2.prompt_profile == "ophiuchus-v1"
    assert backend.fed == [ord(c) for c in ZOOM + ANSWER]  # the end token is never fed
    assert "".join(streamed) == ZOOM + "\n" + ANSWER + "\n"
    assert backend.grammars[0] == form.grammar(2)
    assert backend.grammars[1] == form.grammar(3) != backend.grammars[0]
    assert backend.released == 2 and backend.closed


def test_a_turn_that_would_overflow_the_context_is_refused_before_it_is_evaluated(context):
    backend = Scripted([ZOOM], n_ctx=300)
    session = ModelSession(backend, format_for(context))
    with pytest.raises(
        PolicyError, match=r"context full: 0 tokens .* plus up to 200 .* n_ctx is 300"
    ):
        session.step(context)
    # nothing evaluated, not even the system prompt (its tokens alone overflow)
    assert backend.turns == [] and backend.prefixes == []


def test_a_reply_over_the_token_budget_ends_with_its_beginning(context):
    backend = Scripted([ZOOM])
    session = ModelSession(backend, format_for(context))
    # the session ended the thought after one character (half of the 12 is kept for the rest)
    with pytest.raises(
        PolicyError, match=r"not finished within 12 tokens; it began '<think>l</think>'"
    ):
        session.step(replace(context, budget=Budget(max_new_tokens=12)))


def test_an_unparseable_reply_is_a_bug_under_the_grammar_and_the_models_mistake_without(context):
    form = format_for(context)
    with pytest.raises(PolicyError, match=r"did not parse \(bug\)"):
        ModelSession(Scripted(["hello"]), form).step(context)
    free = Scripted(["hello"], constrained=False)
    with pytest.raises(PolicyError, match="not grammar-constrained: grammar = false"):
        ModelSession(free, form).step(context)
    assert free.grammars == [None]  # unconstrained: no grammar asked for


def test_usage_keeps_the_json_keys_trajectories_had_and_older_ones_still_load():
    from edge_agent.trajectory import StepRecord
    from imaging.records import RecordError, from_plain, to_plain

    usage = TurnUsage(past=7, prompt_tokens=5, prompt_evaluated=5, image_tokens=2, images=1)
    assert list(to_plain(usage)) == [
        "past",
        "prompt_tokens",
        "prompt_evaluated",
        "image_tokens",
        "images",
        "prefill_ms",
        "generated",
        "decode_ms",
        "prompt_profile",
    ]
    assert to_plain(StepRecord(1, "zoom_in", {}))["usage"] is None  # a policy without a model
    before_past = {k: v for k, v in to_plain(usage).items() if k != "past"}  # llama_cpp's, before
    step = from_plain(
        StepRecord, {"number": 1, "tool": "zoom_in", "arguments": {}, "usage": before_past}
    )
    assert step.usage == TurnUsage(prompt_tokens=5, prompt_evaluated=5, image_tokens=2, images=1)
    with pytest.raises(RecordError, match=r"usage\.prompt_tokens: expected int"):
        from_plain(
            StepRecord, {"number": 1, "tool": "x", "arguments": {}, "usage": {"prompt_tokens": "5"}}
        )
    with pytest.raises(ValueError, match="image_tokens 9 exceed prompt_tokens 5"):
        TurnUsage(prompt_tokens=5, image_tokens=9)


class Rambling(Scripted):
    """A model that thinks until it is stopped: `a` after `a`, then, once the session has closed
    its thought, the rest of `after`."""

    def __init__(self, after: str) -> None:
        super().__init__([])
        self.after = after

    @contextmanager
    def reply(self, gbnf: str | None):
        self.grammars.append(gbnf)
        yield _Rambler(self)


class _Rambler(_Reply):
    def __init__(self, backend: Rambling) -> None:
        super().__init__(backend, [ord(c) for c in "<think>"])
        self.thinking = True
        self.rest = iter([ord(c) for c in backend.after] + [END])

    def next_token(self) -> int:
        if self.thinking:
            return next(self.tokens, ord("a"))
        return next(self.rest)

    def force(self, token: int) -> None:
        super().force(token)
        self.thinking = False


def test_a_long_thought_is_ended_at_the_token_bound_and_the_reply_still_finishes(context):
    after = " Action: Answer\n<answer>no lesion</answer>"
    backend = Rambling(after)
    form = format_for(context, think_tokens=40)
    decision = ModelSession(backend, form).step(context)  # max_new_tokens 200: room for it
    assert isinstance(decision, Answer) and decision.text == "no lesion"
    assert backend.forced == [ord(c) for c in "</think>"]
    assert decision.usage.generated == 40 + len("</think>") + len(after)


def test_the_thought_bound_leaves_room_for_the_reply_within_max_new_tokens(context):
    """A default thought bound (1 024 tokens) under a small max_new_tokens: the thought ends
    early enough that the answer still fits, instead of the read ending unfinished."""
    after = " Action: Answer\n<answer>no lesion</answer>"
    backend = Rambling(after)
    budget = Budget(max_new_tokens=300)  # under 2 x AFTER_THOUGHT: half is kept for the reply
    decision = ModelSession(backend, format_for(context)).step(replace(context, budget=budget))
    assert isinstance(decision, Answer)
    assert decision.usage.generated == 300 - 150 + len("</think>") + len(after)  # half of it
    assert Budget().max_new_tokens >= format_for(context).thought_tokens + AFTER_THOUGHT
