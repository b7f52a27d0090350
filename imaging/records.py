"""Plain data <-> frozen dataclasses, checked field by field, for config and trajectories."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

T = typing.TypeVar("T")

# A field's metadata for what lives only in memory (pixels): not written, not read.
NOT_RECORDED = {"record": False}


class RecordError(ValueError):
    """Data does not fit the record type; the message names the path to the bad value."""


def to_plain(value: Any) -> Any:
    """JSON/TOML-ready form: dataclasses to dicts, tuples to lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {plain_name(f): to_plain(getattr(value, f.name)) for f in recorded_fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def recorded_fields(cls_or_value: Any) -> list[dataclasses.Field]:
    """The fields plain data holds: all but those marked NOT_RECORDED."""
    return [f for f in dataclasses.fields(cls_or_value) if f.metadata.get("record", True)]


def plain_name(field: dataclasses.Field) -> str:
    """The key a field has in plain data: its name, unless the name is a Python keyword there
    (`field(metadata={"plain": "class"})`)."""
    return field.metadata.get("plain", field.name)


def from_plain(cls: type[T], data: Any, where: str = "") -> T:
    """Build `cls` from plain data; unknown keys and wrong types raise RecordError."""
    return _convert(cls, data, where or cls.__name__)


def _convert(kind: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is Any:
        return data
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, data, where)
            except RecordError as exc:
                errors.append(str(exc))
        raise RecordError("; ".join(errors))
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, data, where)
    if origin in (tuple, list):
        if not isinstance(data, (list, tuple)):
            raise RecordError(f"{where}: expected a list, got {type(data).__name__}")
        args = typing.get_args(kind)
        items = [_convert(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(data)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or kind in (dict, Mapping):
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: expected a table, got {type(data).__name__}")
        return dict(data)
    return _scalar(kind, data, where)


def _scalar(kind: Any, data: Any, where: str) -> Any:
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(data)
        except ValueError:
            known = ", ".join(repr(member.value) for member in kind)
            raise RecordError(f"{where}: {data!r} is not one of {known}") from None
    if kind is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        return float(data)
    if kind is int and isinstance(data, bool):
        raise RecordError(f"{where}: expected an integer, got {data!r}")
    if isinstance(kind, type) and isinstance(data, kind):
        return data
    raise RecordError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {data!r}")


def _dataclass(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise RecordError(f"{where}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {plain_name(f): f.name for f in recorded_fields(cls) if f.init}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise RecordError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    values = {names[k]: _convert(hints[names[k]], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise RecordError(f"{where}: {exc}") from None
    except ValueError as exc:  # the record's own check refused a value
        raise RecordError(f"{where}: {exc}") from None
