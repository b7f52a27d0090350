"""The Ophiuchus prompt format: tools by their trained names, replies as
`<think>...</think> Action: <Tool>` + a fenced JSON list with one call, or
`<think>...</think> Action: Answer` + `<answer>...</answer>`. Coordinates are pixels of the image
as shown. Every reply is decoded under a GBNF grammar built from the tools' JSON Schemas, so it
always parses."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from edge_agent.formats.gbnf import FormatError, Reply, gbnf, object_rule, value_rules
from tools.registry import Toolbox
from tools.workspace import WorkspaceImage

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

    def image_line(self, image: WorkspaceImage, marker: str) -> str:
        return f"Image {image.index} (width {image.size[0]}, height {image.size[1]}): {marker}"

    def grammar(self, image_count: int) -> str:
        """GBNF for one reply; `index` may only name an image that exists."""
        rules = {
            "root": '"<think>" thought "</think> Action: " ('
            + " | ".join(
                [f"call-{tool.replace('_', '-')}" for tool in ACTIONS.values()] + ["answer"]
            )
            + ")",
            "answer": f'"Answer\\n<answer>" [^<]{{1,{self.max_answer_chars}}} "</answer>"',
            **value_rules(image_count, self.max_think_chars),
        }
        for action, tool in ACTIONS.items():
            body = object_rule(self.toolbox[tool].parameters)
            rules[f"call-{tool.replace('_', '-')}"] = f'"{action}\\n```json\\n[" {body} "]\\n```"'
        return gbnf(rules)

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
