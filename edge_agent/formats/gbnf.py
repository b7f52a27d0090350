"""What every prompt format shares: the parsed reply, and GBNF rules built from the tools' JSON
Schemas so a grammar-constrained reply always carries valid arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class FormatError(Exception):
    """A reply that does not parse. The grammar makes this impossible; seeing it is a bug."""


@dataclass(frozen=True)
class Reply:
    thought: str
    tool: str | None  # our tool name, or None for an answer
    arguments: Mapping | None
    answer: str | None


def value_rules(image_count: int, max_think_chars: int) -> dict[str, str]:
    """The rules `object_rule` refers to; `index` may only name an image that exists."""
    return {
        "thought": f"[^<]{{0,{max_think_chars}}}",
        "index": " | ".join(f'"{i}"' for i in range(image_count)),
        "nat": '"0" | [1-9] [0-9]{0,3}',
        "num": '("0" | [1-9] [0-9]{0,5}) ("." [0-9]{1,3})?',  # seconds of a long video too
        "text": '"\\"" [a-zA-Z0-9 ,.()-]{1,60} "\\""',
    }


def object_rule(schema: Mapping) -> str:
    """GBNF for a JSON object with the schema's required properties, in order."""
    parts = []
    for number, key in enumerate(schema["required"]):
        separator = ", " if number else ""
        parts.append(f'"{separator}\\"{key}\\": " {_value_rule(key, schema["properties"][key])}')
    return '"{" ' + " ".join(parts) + ' "}"'


def _value_rule(key: str, schema: Mapping) -> str:
    kind = schema.get("type")
    if kind == "integer":
        if key == "index":
            return "index"
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None and high - low <= 64:  # only what the tool takes
            return "(" + " | ".join(f'"{v}"' for v in range(int(low), int(high) + 1)) + ")"
        return "nat"
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


def gbnf(rules: Mapping[str, str]) -> str:
    return "\n".join(f"{name} ::= {rule}" for name, rule in rules.items())
