"""A question with its answer options, laid out as the profile says the model was trained on
(`A. pancreas tumor` one per line for Ophiuchus RL, `(A) pancreas tumor` in its SFT data)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# "A. text", "(A) text", "A) text": a line of a multiple-choice question.
OPTION = re.compile(r"^\s*\(?([A-Z])[.)]\s*(\S.*?)\s*$")
HEADER = re.compile(r"^\s*options\s*:\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Question:
    stem: str
    options: tuple[tuple[str, str], ...] = ()  # (letter, text), A, B, C... in order

    @classmethod
    def parse(cls, text: str) -> Question:
        """The trailing lines `A. ...`, `B. ...` (from A, in order) are the options."""
        lines = text.strip().splitlines()
        options: list[tuple[str, str]] = []
        while lines and (match := OPTION.match(lines[-1])):
            options.insert(0, (match[1], match[2]))
            lines.pop()
        letters = [letter for letter, _ in options]
        if len(options) < 2 or letters != [chr(ord("A") + i) for i in range(len(options))]:
            return cls(text.strip())
        while lines and HEADER.match(lines[-1]):
            lines.pop()
        return cls("\n".join(lines).strip(), tuple(options))

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(letter for letter, _ in self.options)

    def layout(self, line: str, separator: str) -> str:
        """The options block as the profile lays it out; empty without options (as upstream)."""
        return separator.join(line.format(letter=k, text=v) for k, v in self.options)

    def option(self, letter: str) -> str:
        return dict(self.options)[letter]
