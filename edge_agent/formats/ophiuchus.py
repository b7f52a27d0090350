"""The Ophiuchus prompt format: tools by their trained names, replies as
`<think>...</think> Action: <Tool>` + a fenced JSON list with one call, or
`<think>...</think> Action: Answer` + `<answer>...</answer>`. Coordinates are pixels of the image
as shown. Every reply is decoded under a GBNF grammar built from the tools' JSON Schemas, so it
always parses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tools.registry import Toolbox

if TYPE_CHECKING:
    from edge_agent.agent import ReadContext

# Trained action name -> our tool.
ACTIONS = {"Zoom-in": "zoom_in", "SAM2": "segment", "BiomedParse": "locate"}
PURPOSE = {
    "Zoom-in": "magnify a box of an image to look closer",
    "SAM2": "outline the object inside a box (segmentation)",
    "BiomedParse": "find structures named in plain words (captions) and mark them",
}
REPLY = re.compile(
    r"^<think>(?P<thought>[^<]*)</think> Action: (?P<action>[A-Za-z0-9-]+)\n"
    r"(?:```json\n(?P<calls>.*)\n```|<answer>(?P<answer>[^<]*)</answer>)$",
    re.DOTALL,
)


class FormatError(Exception):
    """A reply that does not parse. The grammar makes this impossible; seeing it is a bug."""


@dataclass(frozen=True)
class Reply:
    thought: str
    tool: str | None  # our tool name, or None for an answer
    arguments: Mapping | None
    answer: str | None


@dataclass(frozen=True)
class OphiuchusFormat:
    toolbox: Toolbox
    max_think_chars: int = 400
    max_answer_chars: int = 600

    def system_prompt(self) -> str:
        lines = [
            "You are a medical imaging assistant that thinks with images. Before answering, you",
            "may call one tool per turn; each tool returns a new image with its index, width and",
            "height. Coordinates are pixels of the image as shown: [x1, y1, x2, y2].",
            "Tools:",
        ]
        for action, tool in ACTIONS.items():
            schema = self.toolbox[tool].parameters
            arguments = ", ".join(schema["required"])
            lines.append(f"- {action}({arguments}): {PURPOSE[action]}.")
        lines += [
            "Reply with <think>your reasoning</think> Action: <tool name>, then the call as a",
            "JSON list in a ```json block; or <think>...</think> Action: Answer, then",
            "<answer>your answer</answer>.",
        ]
        return "\n".join(lines)

    def image_line(self, index: int, size: tuple[int, int], marker: str) -> str:
        return f"Image {index} (width {size[0]}, height {size[1]}): {marker}"

    def turn_text(self, context: ReadContext, first_new: int, marker: str, pending: str) -> str:
        """The chat text one turn adds (Qwen chat template): the first turn the system prompt,
        the question and the shown images; a later one `pending` (the end of the last reply),
        the newest observation and any image the tool made. `marker` stands for each image."""
        workspace = context.workspace
        lines = [
            self.image_line(image.index, image.size, marker)
            for image in (workspace.get(i) for i in range(first_new, len(workspace)))
        ]
        if first_new == 0:
            text = (
                f"<|im_start|>system\n{self.system_prompt()}<|im_end|>\n"
                f"<|im_start|>user\n{context.question}\n" + "\n".join(lines)
            )
        else:
            observation = context.observation.text if context.observation else ""
            text = f"{pending}<|im_start|>user\nObservation: {observation}\n" + "\n".join(lines)
        return text + "<|im_end|>\n<|im_start|>assistant\n"

    def grammar(self, image_count: int) -> str:
        """GBNF for one reply; `index` may only name an image that exists."""
        indices = " | ".join(f'"{i}"' for i in range(image_count))
        rules = {
            "root": '"<think>" thought "</think> Action: " ('
            + " | ".join(
                [f"call-{tool.replace('_', '-')}" for tool in ACTIONS.values()] + ["answer"]
            )
            + ")",
            "thought": f"[^<]{{0,{self.max_think_chars}}}",
            "answer": f'"Answer\\n<answer>" [^<]{{1,{self.max_answer_chars}}} "</answer>"',
            "index": indices,
            "nat": '"0" | [1-9] [0-9]{0,3}',
            "num": 'nat ("." [0-9]{1,2})?',
            "text": '"\\"" [a-zA-Z0-9 ,.()-]{1,60} "\\""',
        }
        for action, tool in ACTIONS.items():
            body = _object_rule(self.toolbox[tool].parameters)
            rules[f"call-{tool.replace('_', '-')}"] = f'"{action}\\n```json\\n[" {body} "]\\n```"'
        return "\n".join(f"{name} ::= {rule}" for name, rule in rules.items())

    def parse(self, reply: str) -> Reply:
        match = REPLY.match(reply.strip())
        if match is None:
            raise FormatError(f"reply does not follow the format: {reply[:200]!r}")
        thought, action = match["thought"].strip(), match["action"]
        if action == "Answer":
            if match["answer"] is None:
                raise FormatError("Action: Answer without <answer>")
            return Reply(thought, None, None, match["answer"].strip())
        if action not in ACTIONS or match["calls"] is None:
            raise FormatError(f"unknown action {action!r}")
        try:
            calls = json.loads(match["calls"])
        except json.JSONDecodeError as exc:
            raise FormatError(f"call is not JSON: {exc}") from None
        if not isinstance(calls, list) or len(calls) != 1 or not isinstance(calls[0], dict):
            raise FormatError("the call must be a JSON list holding one object")
        return Reply(thought, ACTIONS[action], calls[0], None)


def _object_rule(schema: Mapping) -> str:
    """GBNF for a JSON object with the schema's required properties, in order."""
    parts = []
    for number, key in enumerate(schema["required"]):
        separator = ", " if number else ""
        parts.append(f'"{separator}\\"{key}\\": " {_value_rule(key, schema["properties"][key])}')
    return '"{" ' + " ".join(parts) + ' "}"'


def _value_rule(key: str, schema: Mapping) -> str:
    kind = schema.get("type")
    if kind == "integer":
        return "index" if key == "index" else "nat"
    if kind == "number":
        return "num"
    if kind == "string":
        return "text"
    if kind == "array":
        item = _value_rule("", schema["items"])
        low, high = schema.get("minItems", 1), schema.get("maxItems", 8)
        if low < 1:
            raise ValueError(f"arrays must have minItems >= 1 for the grammar ({key})")
        tail = f'(", " {item}){{{low - 1},{high - 1}}}'
        return f'"[" {item} {tail} "]"'
    raise ValueError(f"no grammar for schema type {kind!r} ({key}); extend _value_rule")
