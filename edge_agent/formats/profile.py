"""Prompt profiles: every string and layout choice a checkpoint was trained on, as a data file per
model family and version (`profiles/<name>.toml`). A checkpoint released with changed strings gets
a new profile file, not new code. A profile is checked once, on load; an error names the file and
the key."""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomllib

from imaging.errors import ConfigError

SYNTAXES = ("action", "tool_call")  # formats/ophiuchus.py, formats/medscope.py
STATUSES = ("trained", "provisional")
KINDS = ("index", "box", "text", "seconds")
RENDERS = ("crop", "mask_overlay", "as_is")
FIELDS = {  # the fields each template may use
    "first_turn": {"question", "options", "index", "width", "height", "what", "duration"},
    "tool_result": {"index", "width", "height", "what"},
    "tool_error": {"action", "input", "error"},
    "layout": {"letter", "text"},
}
# A value of each field's runtime type (formats/turns.py, question.py): a template is formatted
# with these on load, so a format spec or a positional field fails here, not in every read.
SAMPLES = {
    "question": "Which organ?",
    "options": "A. liver",
    "index": 1,
    "width": 512,
    "height": 512,
    "what": "an image",
    "duration": "0.00",
    "action": "Zoom-in",
    "input": {"index": 1},
    "error": "ToolError: out of range",
    "letter": "A",
    "text": "liver",
}


class ProfileError(ConfigError):
    """A profile file that is missing, unreadable or inconsistent (a deployment error: exit 2)."""


PROVISIONAL = " (provisional format)"  # a label's mark of a provisional format


def profile_name(label: str) -> str:
    """The profile's name in a record's label (`Profile.label`)."""
    return label.removesuffix(PROVISIONAL)


@dataclass(frozen=True)
class Argument:
    name: str  # the trained key
    kind: str  # one of KINDS: what the grammar allows
    ours: str  # our tool's key
    wrap: bool = False  # a trained single value our tool takes as a one-item list


@dataclass(frozen=True)
class ToolSpec:
    action: str  # the trained name (`Zoom-in`)
    ours: str  # our registry's tool (`zoom_in`)
    render: str  # how its output image is shown: one of RENDERS
    arguments: tuple[Argument, ...]
    fixed: Mapping[str, object]  # our arguments the trained call does not carry


@dataclass(frozen=True)
class Profile:
    name: str
    status: str
    syntax: str
    about: str
    sources: Mapping[str, str]
    index_base: int
    max_pixels: int
    min_pixels: int  # smaller images are enlarged for the vision encoder; the turn states the size
    first_turn_images: int
    placeholder: str
    max_steps: int
    think_tokens: int
    chars_per_token: int
    system: str
    first_turn: str
    tool_result: str
    tool_error: str
    option_layout: str
    option_separator: str
    answer_action: str
    tool_call_wrapper: bool
    mask_colour: tuple[int, int, int]
    mask_alpha: float
    tools: tuple[ToolSpec, ...]

    @property
    def provisional(self) -> bool:
        return self.status == "provisional"

    @property
    def label(self) -> str:
        """The name for records and reports, which must say when a format is provisional."""
        return f"{self.name}{PROVISIONAL}" if self.provisional else self.name

    def tool(self, action: str) -> ToolSpec:
        for spec in self.tools:
            if spec.action == action:
                return spec
        raise KeyError(action)

    def action_for(self, ours: str) -> ToolSpec:
        for spec in self.tools:
            if spec.ours == ours:
                return spec
        raise KeyError(ours)


def available() -> tuple[str, ...]:
    """The profiles shipped with edge-agent, by name."""
    folder = resources.files("edge_agent.formats") / "profiles"
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (`ophiuchus-v1`), or a profile file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ProfileError(f"profile {str(path)!r}: {exc.strerror}") from None
        where = str(path)
    else:
        return _shipped(str(name_or_path))
    return _parsed(raw, where)


@functools.cache
def _shipped(name: str) -> Profile:
    """A shipped profile, read and checked once per process: every read asks for one."""
    if name not in available():
        raise ProfileError(f"no profile named {name!r}; shipped: {', '.join(available())}")
    resource = resources.files("edge_agent.formats") / "profiles" / f"{name}.toml"
    return _parsed(resource.read_bytes(), f"{name}.toml")


def _parsed(raw: bytes, where: str) -> Profile:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{where}: not valid TOML: {exc}") from None
    return _Reader(data, where).profile()


class _Reader:
    """Reads one profile's tables; every error names the file and the key."""

    def __init__(self, data: Mapping, where: str) -> None:
        self.data, self.where = data, where

    def get(self, key: str, kind: type, table: str | None = None, default=None):
        section = self.data.get(table, {}) if table else self.data
        label = f"[{table}] {key}" if table else key
        if key not in section:
            if default is None:
                raise ProfileError(f"{self.where}: {label} is missing")
            return default
        value = section[key]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise ProfileError(f"{self.where}: {label} must be {kind.__name__}, not {value!r}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], table: str | None = None) -> str:
        value = self.get(key, str, table)
        if value not in allowed:
            raise ProfileError(f"{self.where}: {key} = {value!r}; one of {', '.join(allowed)}")
        return value

    def template(self, key: str, table: str = "text", placeholder: str = "") -> str:
        text = self.get(key, str, table)
        label = f"{self.where}: [{table}] {key}"
        allowed = FIELDS[key]
        try:
            used = {field for _, field, _, _ in string.Formatter().parse(text) if field}
        except ValueError as exc:
            raise ProfileError(f"{label}: {exc}") from None
        unknown = used - allowed
        if unknown:
            raise ProfileError(f"{label} uses unknown fields {sorted(unknown)}")
        try:
            text.format(**{name: SAMPLES[name] for name in allowed})
        except IndexError:
            raise ProfileError(
                f"{label}: a positional field {{}}; name one of {sorted(allowed)}"
            ) from None
        except KeyError as exc:  # a field inside a format spec: `{question:{pad}}`
            raise ProfileError(f"{label} uses unknown fields [{exc}]") from None
        except (ValueError, TypeError) as exc:
            raise ProfileError(f"{label}: {exc}") from None
        if placeholder and text.count(placeholder) != 1:
            raise ProfileError(f"{label} must hold {placeholder!r} once")
        return text

    def tools(self) -> tuple[ToolSpec, ...]:
        specs = []
        for number, table in enumerate(self.get("tools", list)):
            label = f"{self.where}: [[tools]] #{number + 1}"
            try:
                arguments = tuple(
                    Argument(a["name"], a["kind"], a["ours"], bool(a.get("wrap", False)))
                    for a in table["arguments"]
                )
                fixed = table.get("fixed", {})
                spec = ToolSpec(table["action"], table["ours"], table["render"], arguments, fixed)
            except (KeyError, TypeError) as exc:
                raise ProfileError(f"{label}: missing or malformed {exc}") from None
            bad = [a.kind for a in arguments if a.kind not in KINDS]
            if bad or spec.render not in RENDERS:
                raise ProfileError(f"{label}: kind {bad} or render {spec.render!r} not known")
            specs.append(spec)
        if len({s.action for s in specs}) != len(specs) or not specs:
            raise ProfileError(f"{self.where}: [[tools]] must name each action once")
        return tuple(specs)

    def profile(self) -> Profile:
        placeholder = self.get("placeholder", str, "images")
        colour = self.get("mask_colour", list, "render")
        if len(colour) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour):
            raise ProfileError(f"{self.where}: [render] mask_colour must be 3 integers 0..255")
        profile = Profile(
            name=self.get("name", str),
            status=self.choice("status", STATUSES),
            syntax=self.choice("syntax", SYNTAXES),
            about=self.get("about", str),
            sources=self.get("sources", dict),
            index_base=self.get("index_base", int, "images"),
            max_pixels=self.get("max_pixels", int, "images"),
            min_pixels=self.get("min_pixels", int, "images", default=0),
            first_turn_images=self.get("first_turn", int, "images"),
            placeholder=placeholder,
            max_steps=self.get("max_steps", int, "budget"),
            think_tokens=self.get("think_tokens", int, "budget"),
            chars_per_token=self.get("chars_per_token", int, "budget"),
            system=self.get("system", str, "text"),
            first_turn=self.template("first_turn", placeholder=placeholder),
            tool_result=self.template("tool_result", placeholder=placeholder),
            tool_error=self.template("tool_error"),
            option_layout=self.template("layout", "options"),
            option_separator=self.get("separator", str, "options"),
            answer_action=self.get("answer_action", str, "reply"),
            tool_call_wrapper=self.get("tool_call_wrapper", bool, "reply"),
            mask_colour=(colour[0], colour[1], colour[2]),
            mask_alpha=float(self.get("mask_alpha", float, "render")),
            tools=self.tools(),
        )
        if profile.index_base not in (0, 1) or profile.first_turn_images < 1:
            raise ProfileError(f"{self.where}: [images] index_base 0|1 and first_turn >= 1")
        if min(profile.max_pixels, profile.think_tokens, profile.chars_per_token) < 1:
            raise ProfileError(f"{self.where}: max_pixels, think_tokens, chars_per_token >= 1")
        for key in ("system", "first_turn", "tool_result"):
            if key not in profile.sources:
                raise ProfileError(f"{self.where}: [sources] {key} is missing (where is it from?)")
        return profile
