"""A trained call (action name + the JSON the model was trained to write) to our tool call and
back, in one place: names renamed, a trained caption string wrapped as our one-item list, trained
indices turned into workspace indices, our arguments the trained call lacks filled in. Our
registry still validates the result."""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.formats.gbnf import FormatError
from edge_agent.formats.profile import ToolSpec
from edge_agent.formats.shown import ShownImages


def to_ours(spec: ToolSpec, payload: object, shown: ShownImages) -> dict:
    """Our tool's arguments for the trained call `spec.action(payload)`."""
    names = [argument.name for argument in spec.arguments]
    if not isinstance(payload, dict) or sorted(payload) != sorted(names):
        raise FormatError(f"{spec.action} takes {names}, got {payload!r}")
    arguments = dict(spec.fixed)
    for argument in spec.arguments:
        value = payload[argument.name]
        if argument.kind == "index":
            value = shown.workspace_index(value)
        arguments[argument.ours] = [value] if argument.wrap else value
    return arguments


def to_trained(spec: ToolSpec, arguments: Mapping, shown: ShownImages) -> dict:
    """The trained payload for our call (to show the model its own call, e.g. in an error)."""
    payload = {}
    for argument in spec.arguments:
        value = arguments.get(argument.ours)
        if argument.kind == "index" and value in shown.workspace:
            value = shown.trained_index(value)
        if argument.wrap and isinstance(value, list) and len(value) == 1:
            value = value[0]
        payload[argument.name] = value
    return payload
