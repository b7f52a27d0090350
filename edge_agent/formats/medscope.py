"""The MedScope prompt format, for cine and video reads: the model first sees an overview sheet
of the whole video, then fetches the moments it needs. Tools go by their own names with seconds
as arguments; a reply is `<think>...</think>` and then either
`<tool_call>{"name": "crop_video", "arguments": {"start": 12.0, "end": 18.0, "n": 8}}</tool_call>`
or `<answer>...</answer>`. Every reply is decoded under a GBNF grammar built from the tools' JSON
Schemas, so it always parses."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from edge_agent.formats.gbnf import FormatError, Reply, gbnf, object_rule, value_rules
from tools.registry import Toolbox
from tools.workspace import WorkspaceImage

PURPOSE = {
    "crop_video": "n frames spread over [start, end] seconds, as one contact sheet",
    "get_frame": "the single frame at t seconds, as an image",
    "zoom_in": "magnify a box [x1, y1, x2, y2] of a frame image to look closer",
}
REPLY = re.compile(
    r"^<think>(?P<thought>[^<]*)</think>\n"
    r"(?:<tool_call>(?P<call>.*)</tool_call>|<answer>(?P<answer>[^<]*)</answer>)$",
    re.DOTALL,
)


@dataclass(frozen=True)
class MedScopeFormat:
    toolbox: Toolbox
    duration_s: float
    max_think_chars: int = 400
    max_answer_chars: int = 600

    def system_prompt(self) -> str:
        lines = [
            "You are a clinical video assistant that thinks with videos. You first see an",
            "overview: frames sampled over the whole video, each labelled with its time. Before",
            "answering, you may call one tool per turn to look again at the moments that matter;",
            f"times are seconds from the start (0 to {self.duration_s:.2f}).",
            "Tools:",
        ]
        for tool, purpose in PURPOSE.items():
            arguments = ", ".join(self.toolbox[tool].parameters["required"])
            lines.append(f"- {tool}({arguments}): {purpose}.")
        lines += [
            "Reply with <think>your reasoning</think>, a new line, then either",
            '<tool_call>{"name": ..., "arguments": {...}}</tool_call> or <answer>your answer,',
            "naming the times you saw</answer>.",
        ]
        return "\n".join(lines)

    def image_line(self, image: WorkspaceImage, marker: str) -> str:
        times = image.times_s
        if image.members:
            what = f"{len(times)} frames from {times[0]:.2f} to {times[-1]:.2f} s"
        elif times:
            what = f"frame at {times[0]:.3f} s"
        else:
            what = "image"
        return (
            f"Image {image.index} ({what}; width {image.size[0]}, height {image.size[1]}): {marker}"
        )

    def grammar(self, image_count: int) -> str:
        names = [tool.replace("_", "-") for tool in PURPOSE]
        rules = {
            "root": '"<think>" thought "</think>\\n" (call | answer)',
            "call": '"<tool_call>" (' + " | ".join(f"call-{n}" for n in names) + ') "</tool_call>"',
            "answer": f'"<answer>" [^<]{{1,{self.max_answer_chars}}} "</answer>"',
            **value_rules(image_count, self.max_think_chars),
        }
        for tool, name in zip(PURPOSE, names, strict=True):
            body = object_rule(self.toolbox[tool].parameters)
            rules[f"call-{name}"] = f'"{{\\"name\\": \\"{tool}\\", \\"arguments\\": " {body} "}}"'
        return gbnf(rules)

    def parse(self, reply: str) -> Reply:
        match = REPLY.match(reply.strip())
        if match is None:
            raise FormatError(f"reply does not follow the format: {reply[:200]!r}")
        thought = match["thought"].strip()
        if match["answer"] is not None:
            return Reply(thought, None, None, match["answer"].strip())
        try:
            call = json.loads(match["call"])
        except json.JSONDecodeError as exc:
            raise FormatError(f"call is not JSON: {exc}") from None
        if not isinstance(call, dict) or call.get("name") not in PURPOSE:
            raise FormatError(f"unknown tool call {match['call'][:100]!r}")
        if not isinstance(call.get("arguments"), dict):
            raise FormatError("the call's arguments must be a JSON object")
        return Reply(thought, call["name"], call["arguments"], None)
