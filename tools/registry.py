"""The tool registry: names, descriptions and JSON Schemas; arguments are validated here, once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from tools.errors import ToolCallError
from tools.observation import Observation
from tools.workspace import Workspace

ToolFunction = Callable[[Mapping, Workspace], Observation]

BOX_SCHEMA = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 4,
    "maxItems": 4,
    "description": "[x1, y1, x2, y2] in pixels of the image named by index",
}
INDEX_SCHEMA = {"type": "integer", "minimum": 0, "description": "workspace image index"}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping
    run: ToolFunction = field(repr=False)

    def __post_init__(self) -> None:
        # A malformed schema is our bug: fail when the tool is defined, not when a model calls it.
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"tool name {self.name!r} must be snake_case")
        Draft202012Validator.check_schema(self.parameters)
        if self.parameters.get("type") != "object":
            raise ValueError(f"tool {self.name}: parameters must be a JSON object schema")

    def spec(self) -> dict:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


class Closable(Protocol):
    def close(self) -> None: ...


class Toolbox:
    """The tools a policy may call, by name; owns the models its tools run (closed by `close()`)."""

    def __init__(self, tools: Iterable[Tool], resources: Iterable[Closable] = ()) -> None:
        self._resources = list(resources)
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"tool {tool.name!r} registered twice")
            self._tools[tool.name] = tool
            self._validators[tool.name] = Draft202012Validator(tool.parameters)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def specs(self) -> list[dict]:
        return [tool.spec() for tool in self._tools.values()]

    def validate(self, name: str, arguments: object) -> None:
        """Raise ToolCallError naming the problem; a tool never sees malformed arguments."""
        if name not in self._tools:
            raise ToolCallError(f"unknown tool {name!r}; valid tools: {', '.join(self.names)}")
        error = best_match(self._validators[name].iter_errors(arguments))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "arguments"
            raise ToolCallError(f"{name}: {where}: {error.message}")

    def close(self) -> None:
        """Release every model the tools hold; idempotent."""
        while self._resources:
            self._resources.pop().close()

    def call(self, name: str, arguments: Mapping, workspace: Workspace) -> Observation:
        self.validate(name, arguments)
        return self._tools[name].run(arguments, workspace)
