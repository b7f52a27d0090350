"""The tool-call reply syntax (profile syntax "tool_call"), used by the provisional MedScope
profile: `<think>...</think>` then `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` or
`<answer>...</answer>`, as MedScope's framework figure shows (`crop_video` with `start_time` /
`end_time` in seconds). PROVISIONAL until MedScope's code is released: the profile says so, and
so does every record of a read made with it."""

from __future__ import annotations

import json
import re

from edge_agent.formats.calls import to_ours
from edge_agent.formats.gbnf import (
    FormatError,
    Reply,
    bounded,
    gbnf,
    json_object,
    json_rules,
    rule_name,
)
from edge_agent.formats.turns import ProfileFormat

REPLY = re.compile(
    r"^<think>(?P<thought>[^<]*)</think>\s*"
    r"(?:<tool_call>(?P<call>[^<]*)</tool_call>|<answer>(?P<answer>[^<]*)</answer>)$",
    re.DOTALL,
)
ANSWER_CHARS = 600


class MedScopeFormat(ProfileFormat):
    def grammar(self, image_count: int) -> str:
        p = self.profile
        calls = [f"call-{rule_name(spec.action)}" for spec in p.tools]
        rules = {
            "root": '"<think>" thought "</think>" ws (call | answer)',
            "call": '"<tool_call>" ws "{" ws "\\"name\\":" ws (' + " | ".join(calls) + ') ws "}" '
            'ws "</tool_call>"',
            "answer": '"<answer>" answer-body "</answer>"',
            **bounded("answer-body", "[^<]", ANSWER_CHARS, least=1),
            **bounded("thought", "[^<]", self.think_chars),
            **json_rules(self.shown(image_count).trained),
        }
        for spec, name in zip(p.tools, calls, strict=True):
            body = json_object((a.name, a.kind) for a in spec.arguments)
            rules[name] = f'"\\"{spec.action}\\"" ws "," ws "\\"arguments\\":" ws {body}'
        return gbnf(rules)

    def parse(self, reply: str, image_count: int) -> Reply:
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
        if not isinstance(call, dict) or set(call) != {"name", "arguments"}:
            raise FormatError(f"a call is {{name, arguments}}, got {match['call'][:100]!r}")
        try:
            spec = self.profile.tool(call["name"])
        except (KeyError, TypeError):
            raise FormatError(f"unknown tool {call['name']!r}") from None
        arguments = to_ours(spec, call["arguments"], self.shown(image_count))
        return Reply(thought, spec.ours, arguments, None)
