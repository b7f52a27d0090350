"""The Ophiuchus reply syntax (profile syntax "action"), as in SII-zyj/Ophiuchus's SFT data and
env: `<think>...</think> Action: <action>` + a fenced JSON list holding one call, optionally
wrapped as `Action: <tool_call><action> ...</tool_call>`, or `<think>...</think> Action: Answer`
+ `<answer>...</answer>`. The grammar allows exactly that, with pretty-printed or compact JSON,
trained argument shapes (`captions` a string) and only the indices of images already shown."""

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
    r"^<think>(?P<thought>[^<]*)</think> Action: (?:"
    r"(?P<wrap><tool_call>)?(?P<action>[A-Za-z0-9_-]+)\n```json\n(?P<calls>[^`]*)\n```"
    r"(?(wrap)</tool_call>)"
    r"|(?P<answer_action>[A-Za-z]+)\n<answer>(?P<answer>[^<]*)</answer>)$",
    re.DOTALL,
)
ANSWER_CHARS = 600


class OphiuchusFormat(ProfileFormat):
    def grammar(self, image_count: int) -> str:
        """GBNF for one reply while `image_count` workspace images exist."""
        p = self.profile
        calls = [f"call-{rule_name(spec.action)}" for spec in p.tools]
        wrapped = ' | "<tool_call>" calls "</tool_call>"' if p.tool_call_wrapper else ""
        rules = {
            "root": f'"<think>" thought "</think> Action: " (calls{wrapped} | answer)',
            "calls": " | ".join(calls),
            "answer": f'"{p.answer_action}\\n<answer>" answer-body "</answer>"',
            **self._answer_body(),
            **bounded("thought", "[^<]", self.think_chars),
            **json_rules(self.shown(image_count).trained),
        }
        for spec, name in zip(p.tools, calls, strict=True):
            body = json_object((a.name, a.kind) for a in spec.arguments)
            rules[name] = f'"{spec.action}\\n```json\\n" ws "[" ws {body} ws "]\\n```"'
        return gbnf(rules)

    def _answer_body(self) -> dict[str, str]:
        """An option letter (with the trained spaces around it) when the question has options."""
        letters = self.question.letters
        if letters:
            return {"answer-body": '" "? (' + " | ".join(f'"{k}"' for k in letters) + ') " "?'}
        return bounded("answer-body", "[^<]", ANSWER_CHARS, least=1)

    def parse(self, reply: str, image_count: int) -> Reply:
        """The reply as our tool call (workspace indices) or an answer."""
        match = REPLY.match(reply.strip())
        if match is None:
            raise FormatError(f"reply does not follow the format: {reply[:200]!r}")
        thought = match["thought"].strip()
        if match["answer"] is not None:
            if match["answer_action"] != self.profile.answer_action:
                raise FormatError(f"unknown action {match['answer_action']!r}")
            return self.answer(thought, match["answer"])
        try:
            spec = self.profile.tool(match["action"])
        except KeyError:
            raise FormatError(f"unknown action {match['action']!r}") from None
        try:
            calls = json.loads(match["calls"])
        except json.JSONDecodeError as exc:
            raise FormatError(f"call is not JSON: {exc}") from None
        if not isinstance(calls, list) or len(calls) != 1:
            raise FormatError("the call must be a JSON list holding one object")
        return Reply(thought, spec.ours, to_ours(spec, calls[0], self.shown(image_count)), None)

    def answer(self, thought: str, text: str) -> Reply:
        text = text.strip()
        if not self.question.letters:
            return Reply(thought, None, None, text)
        if text not in self.question.letters:
            raise FormatError(f"answer {text!r} is not one of {self.question.letters}")
        return Reply(thought, None, None, text, self.question.option(text))
