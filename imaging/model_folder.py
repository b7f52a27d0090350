"""A model folder: the files one export wrote plus `manifest.json`, which names every file with its
role, SHA-256 and size, and says which runtime reads the folder (the format id), where the weights
came from (the source checkpoint), which versions wrote it and which prompt profile the model was
trained with. The kind's own settings (a decoder's KV shape, a locate contract) ride along as
free fields at the top level of the same JSON object, so manifests written before this type load.

Exporters write a folder through `ModelFolder.write`; every runtime and `doctor` read and check it
through `ModelFolder.read` and `verified`, so any defect (no manifest, bad JSON, another format, a
name outside the folder, a missing or changed file) is one ModelLoadError with one line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaging.atomic import write_atomic
from imaging.checksum import sha256_file
from imaging.errors import ModelLoadError
from imaging.records import RecordError, from_plain, to_plain

MANIFEST = "manifest.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def plain_name(name: str) -> str:
    """`name` itself when it names a file inside the folder: names are joined to the folder, so a
    manifest must never point outside it."""
    if Path(name).name != name or name in ("", ".", "..") or "\\" in name:
        raise ValueError(f"file {name!r} must be a plain name inside the model folder")
    return name


@dataclass(frozen=True)
class ModelFile:
    """One file of the folder: a plain name inside it, what it is for, and its fingerprint."""

    name: str
    role: str
    sha256: str
    bytes: int

    def __post_init__(self) -> None:
        plain_name(self.name)
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"file {self.name}: sha256 {self.sha256!r} is not a SHA-256 digest")
        if self.bytes < 0:
            raise ValueError(f"file {self.name}: bytes must be >= 0, got {self.bytes}")


@dataclass(frozen=True)
class Manifest:
    """What `manifest.json` holds. `fields` are the kind's own keys (top level in the JSON)."""

    format: str  # which runtime reads the folder, with its version: "edge-agent gguf export 1"
    files: tuple[ModelFile, ...]
    source: Mapping[str, Any] | None = None  # the checkpoint: its files and their SHA-256
    versions: Mapping[str, Any] = field(default_factory=dict)  # packages that wrote the export
    profile: str = ""  # the prompt profile an LLM was trained with; "" when none applies
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.format:
            raise ValueError("format must name the kind of model folder")
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"files are listed more than once: {names}")
        clash = sorted(set(self.fields) & set(_COMMON))
        if clash:
            raise ValueError(f"kind fields {clash} collide with the manifest's own keys")

    def to_plain(self) -> dict:
        """The JSON object: common keys first, then the kind's fields at the same level."""
        common = {
            "format": self.format,
            "profile": self.profile,
            "files": to_plain(self.files),
            "source": to_plain(self.source),
            "versions": to_plain(self.versions),
        }
        return {**common, **to_plain(self.fields)}

    @classmethod
    def from_plain(cls, data: Any, where: str = "manifest") -> Manifest:
        """Checked like any record; keys this type does not own become the kind's fields."""
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        common = {key: data[key] for key in _COMMON if key in data}
        kind = {key: value for key, value in data.items() if key not in _COMMON}
        return from_plain(cls, {**common, "fields": kind}, where)


_COMMON = ("format", "profile", "files", "source", "versions")


@dataclass(frozen=True)
class ModelFolder:
    """A folder and its parsed manifest; files are checked against it when a runtime takes them."""

    path: Path
    manifest: Manifest
    manifest_name: str = MANIFEST

    @classmethod
    def read(
        cls, path: Path | str, formats: str | Iterable[str] = (), what: str = "model"
    ) -> ModelFolder:
        """The folder (or its manifest file) parsed and checked; `formats` are those accepted
        (empty: any). Reads no model file: `verified` hashes the ones a runtime opens."""
        path = Path(path)
        manifest_path = path if path.is_file() else path / MANIFEST
        if not manifest_path.is_file():
            raise ModelLoadError(
                f"{what} {path} has no {manifest_path.name}: not a folder written by "
                "`edge-agent export`"
            )
        try:
            manifest = Manifest.from_plain(json.loads(manifest_path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise ModelLoadError(f"{manifest_path} cannot be read: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{manifest_path} is not valid JSON: {exc}") from None
        except RecordError as exc:
            raise ModelLoadError(f"{manifest_path} is incomplete or damaged: {exc}") from None
        accepted = (formats,) if isinstance(formats, str) else tuple(formats)
        if accepted and manifest.format not in accepted:
            wanted = " or ".join(repr(f) for f in accepted)
            raise ModelLoadError(f"{manifest_path}: format {manifest.format!r} is not {wanted}")
        return cls(manifest_path.parent, manifest, manifest_path.name)

    @classmethod
    def write(
        cls,
        path: Path | str,
        *,
        format: str,
        roles: Mapping[str, str],
        source: Mapping[str, Any] | None = None,
        versions: Mapping[str, Any] | None = None,
        profile: str = "",
        fields: Mapping[str, Any] | None = None,
        manifest_name: str = MANIFEST,
    ) -> ModelFolder:
        """Hash the files (`roles`: name -> role, in the order to list them) and write the
        manifest atomically, so a folder never holds a half-written one."""
        path = Path(path)
        files = tuple(
            ModelFile(
                name, role, sha256_file(path / plain_name(name)), (path / name).stat().st_size
            )
            for name, role in roles.items()
        )
        manifest = Manifest(format, files, source, versions or {}, profile, fields or {})
        target = path / manifest_name
        write_atomic(target, (json.dumps(manifest.to_plain(), indent=2) + "\n").encode())
        return cls(path, manifest, manifest_name)

    @property
    def manifest_path(self) -> Path:
        return self.path / self.manifest_name

    def entry(self, role: str) -> ModelFile:
        """The (first) file listed for `role`; its absence names the roles there are."""
        found = next((f for f in self.manifest.files if f.role == role), None)
        if found is None:
            roles = ", ".join(dict.fromkeys(f.role for f in self.manifest.files)) or "no files"
            raise ModelLoadError(f"{self.path}: the export has no {role} (it has: {roles})")
        return found

    def named(self, name: str) -> ModelFile:
        found = next((f for f in self.manifest.files if f.name == name), None)
        if found is None:
            raise ModelLoadError(f"{self.manifest_path} lists no file {name!r}")
        return found

    def verified(self, role: str) -> Path:
        """The path of the file for `role`, present and unchanged since the export."""
        return self.check(self.entry(role))

    def check(self, entry: ModelFile) -> Path:
        """`entry`'s file, present and unchanged since the export, else a ModelLoadError."""
        path = self.path / entry.name
        wrong = self._wrong(entry)
        if wrong == "missing":
            raise ModelLoadError(f"model file {path} does not exist (listed in its manifest)")
        if wrong:
            raise ModelLoadError(
                f"{path} does not match the SHA-256 in its manifest ({wrong}): corrupt or replaced"
            )
        return path

    def check_all(self) -> None:
        """Every listed file is present and unchanged."""
        for entry in self.manifest.files:
            self.check(entry)

    def problems(self) -> list[str]:
        """Every listed file that is missing or changed, in a few words each (for `doctor`)."""
        found = ((entry.name, self._wrong(entry)) for entry in self.manifest.files)
        return [f"{name} {wrong}" for name, wrong in found if wrong]

    def _wrong(self, entry: ModelFile) -> str:
        """What is wrong with `entry`'s file ("" when nothing); the size first, it is cheap."""
        path = self.path / entry.name
        if not path.is_file():
            return "missing"
        size = path.stat().st_size
        if size != entry.bytes:
            return f"size differs: {size} bytes, listed {entry.bytes}"
        return "" if sha256_file(path) == entry.sha256 else "hash differs"


def checkpoint_record(path: Path | None) -> dict:
    """The source an export came from: a checkpoint folder's files, or one checkpoint file, each
    with its SHA-256; None: random weights (test models)."""
    if path is None:
        return {"random_weights": True}
    path = Path(path)
    if path.is_dir():
        files = [
            {"name": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(path.iterdir())
            if p.is_file()
        ]
        return {"dir": str(path), "files": files}
    return {
        "checkpoint": str(path),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "random_weights": False,
    }
