"""Our profiles render the upstream conversations exactly: the same text and, turn by turn as the
llama_cpp policy evaluates it, the same tokens as the upstream rendering of the whole
conversation (tests/data/golden, written by generate.py from the upstream code, not ours)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import Budget, ReadContext
from edge_agent.formats import SYNTAX, load_profile
from edge_agent.formats.chat import turn_input
from edge_agent.formats.question import Question
from imaging.frame import Frame
from tests.support import phantom_frame
from tools.toolbox import default_toolbox
from tools.workspace import Affine, Workspace

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))
VISION = "<|vision_start|><|image_pad|><|vision_end|>"  # what the chat template writes per image
EXPECTED_TOOLS = {  # each case's replies, parsed: our tool (None: the answer)
    "ophiuchus_sft_1": ["locate", "zoom_in", None],
    "ophiuchus_sft_2": ["segment", "zoom_in", None],
    "ophiuchus_rl_rollout": ["locate", "segment", "zoom_in", None],
    "medscope_provisional_video": ["crop_video", "get_frame", None],
}


def test_every_golden_case_is_checked():
    assert sorted(EXPECTED_TOOLS) == CASES


class Conversation:
    """A read replayed from a golden case: the workspace grows by one image per tool call."""

    def __init__(self, name: str) -> None:
        self.case = json.loads((GOLDEN / f"{name}.json").read_text())
        self.expected = (GOLDEN / f"{name}.txt").read_text()
        self.profile = load_profile(self.case["profile"])
        self.form = SYNTAX[self.profile.syntax](
            self.profile,
            originals=1,
            question=Question.parse(self.case["question"]),
            duration_s=self.case.get("duration_s"),
        )
        self.workspace = Workspace()
        self.steps = []

    def add_image(self, number: int) -> None:
        width, height = self.case["images"][number]
        frame = self._frame(number, width, height)
        pixels = np.zeros((height, width), np.uint8)
        tool = "shown" if number == 0 else "tool"
        self.workspace.add(
            frame,
            Affine.identity(),
            (width, height),
            None,
            tool=tool,
            pixels=pixels,
            **self._members(number),
        )

    def _frame(self, number: int, width: int, height: int) -> Frame:
        frame = phantom_frame(np.zeros((height, width)))
        times = self._times(number)
        if len(times) == 1:
            return replace(frame, time_s=times[0])
        return frame

    def _members(self, number: int) -> dict:
        times = self._times(number)
        if len(times) < 2:
            return {}
        base = phantom_frame(np.zeros((4, 4)))
        return {"members": tuple(replace(base, time_s=t) for t in times)}

    def _times(self, number: int) -> list[float]:
        """A video read's frame times, from the case's own description of its images."""
        if self.profile.name != "medscope-provisional":
            return []
        sheet = lambda start, end: list(np.linspace(start, end, 8))  # noqa: E731
        return {0: sheet(0.0, 4.67), 1: sheet(2.0, 3.5), 2: [3.1]}[number]

    def turns(self) -> list[str]:
        """What the policy evaluates, turn by turn, with each reply between."""
        context = ReadContext(self.case["question"], self.workspace, default_toolbox(), Budget())
        self.add_image(0)
        pieces, pending = [], ""
        for number, reply in enumerate(self.case["replies"], start=1):
            first_new = 0 if number == 1 else len(self.workspace) - 1
            text, images = turn_input(self.form, context, first_new, VISION, pending)
            assert len(images) == text.count(VISION)
            pieces += [text, reply]
            pending = "<|im_end|>\n"
            if number < len(self.case["replies"]):
                self.add_image(number)
        return [*pieces, pending]


@pytest.mark.parametrize("name", CASES)
def test_our_turns_render_the_upstream_conversation_exactly(name):
    conversation = Conversation(name)
    assert "".join(conversation.turns()) == conversation.expected


@pytest.mark.parametrize("name", CASES)
def test_turn_by_turn_tokens_equal_the_upstream_tokens(name, tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    conversation = Conversation(name)
    ours = [i for piece in conversation.turns() for i in _ids(tokenizer, piece)]
    assert ours == _ids(tokenizer, conversation.expected)


@pytest.mark.parametrize("name", CASES)
def test_the_checkpoints_chat_template_renders_our_messages_as_upstream(name, tiny):
    """Our messages through the chat template `export tiny-vlm` writes (the GGUF carries it)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    conversation = Conversation(name)
    conversation.add_image(0)
    context = ReadContext(
        conversation.case["question"], conversation.workspace, default_toolbox(), Budget()
    )
    messages = _chat(conversation.form.messages(context, 0), conversation.profile.placeholder)
    for number, reply in enumerate(conversation.case["replies"], start=1):
        messages.append({"role": "assistant", "content": reply})
        if number < len(conversation.case["replies"]):
            conversation.add_image(number)
            new = conversation.form.messages(context, len(conversation.workspace) - 1)
            messages += _chat(new, conversation.profile.placeholder)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == conversation.expected


@pytest.mark.parametrize("name", CASES)
def test_every_golden_reply_parses_to_the_trained_call(name):
    conversation = Conversation(name)
    replies = conversation.case["replies"]
    tools = [conversation.form.parse(reply, number).tool for number, reply in enumerate(replies, 1)]
    assert tools == EXPECTED_TOOLS[name]


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _chat(messages, placeholder: str) -> list[dict]:
    """Our messages as chat-template messages: the image placeholder becomes an image part."""
    out = []
    for message in messages:
        parts = []
        for number, text in enumerate(message.text.split(placeholder)):
            if number:
                parts.append({"type": "image"})
            if text:
                parts.append({"type": "text", "text": text})
        out.append({"role": message.role, "content": parts})
    return out
