"""What every prompt format shares: the parsed reply, and GBNF rules for the JSON a trained call
carries, so a grammar-constrained reply always holds a call the model could have made in
training (pretty-printed or compact JSON alike)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# llama.cpp refuses a repetition above 2000 (MAX_REPETITION_THRESHOLD); longer bounds are built
# from blocks, which stays unambiguous (at most two parse stacks at any character).
BLOCK = 100


class FormatError(Exception):
    """A reply that does not parse. The grammar makes this impossible; seeing it is a bug."""


@dataclass(frozen=True)
class Reply:
    thought: str
    tool: str | None  # our tool name, or None for an answer
    arguments: Mapping | None  # in our tool's shape, indices in the workspace
    answer: str | None  # the answer text; for a multiple-choice question, the option letter
    option: str | None = None  # the chosen option's text, for a multiple-choice question


def bounded(name: str, char_class: str, most: int, least: int = 0) -> dict[str, str]:
    """Rule `name`: `char_class` repeated least..most times, in a form llama.cpp and llguidance
    both accept for any bound (a block rule, as neither takes a repetition of a repetition)."""
    if most <= 2 * BLOCK:
        return {name: f"{char_class}{{{least},{most}}}"}
    rest = f"{name}-block{{0,{(most - least) // BLOCK}}} {char_class}{{0,{BLOCK - 1}}}"
    return {
        name: f"{char_class}{{{least}}} {rest}" if least else rest,
        f"{name}-block": f"{char_class}{{{BLOCK}}}",
    }


def json_rules(index_values: Iterable[int]) -> dict[str, str]:
    """Values by trained argument kind (profile.KINDS) and JSON's insignificant whitespace."""
    indices = [f'"{i}"' for i in index_values]
    return {
        "ws": "[ \\t\\n]{0,24}",  # pretty-printed (indent 4 or 8) or compact
        "index": " | ".join(indices) if indices else '"-"',  # no image: no index is valid
        "int": '"0" | [1-9] [0-9]{0,4}',
        "box": '"[" ws int ws "," ws int ws "," ws int ws "," ws int ws "]"',
        "text": '"\\"" [^"\\\\\\n<]{1,200} "\\""',
        "seconds": '("0" | [1-9] [0-9]{0,5}) ("." [0-9]{1,3})?',
    }


def json_object(arguments: Iterable[tuple[str, str]]) -> str:
    """GBNF for a JSON object with these (key, kind) members, in order."""
    members = [f'"\\"{key}\\":" ws {kind}' for key, kind in arguments]
    return '"{" ws ' + ' ws "," ws '.join(members) + ' ws "}"'


def rule_name(text: str) -> str:
    """A GBNF rule name for a trained action name (`Zoom-in` -> `zoom-in`)."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def gbnf(rules: Mapping[str, str]) -> str:
    return "\n".join(f"{name} ::= {rule}" for name, rule in rules.items())
