"""Whether a run folder's results still stand: a run resumes only with the settings it was made
with, and a result counts only for the case-file row it was read from.

The settings are everything a result depends on besides its row: our version, the read, budget
and tool tables, the policy and its table, `--no-tools`, and the SHA-256 of every model file the
config names. Hashing gigabytes on every resume would make it slow, so a file whose size and
modification time are those recorded in run.json keeps its recorded hash."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_agent import __version__
from edge_agent.config import Config
from edge_agent.evaluation.cases import Case
from edge_agent.policies import policy_key
from imaging.checksum import sha256_file
from imaging.model_folder import MANIFEST
from imaging.records import RecordError, from_plain, to_plain

# The fields of a policy's table that may name a file or folder (a profile may also be a name).
MODEL_FIELDS = {"llama_cpp": ("model", "mmproj", "profile"), "onnx_trt": ("model_dir", "profile")}
SHOWN_DIFFERENCES = 3


@dataclass(frozen=True)
class FileHash:
    """A model file's SHA-256, with the size and time it had when hashed."""

    bytes: int
    mtime_ns: int
    sha256: str


def run_settings(
    config: Config, no_tools: bool, known: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings, and the FileHash of each model file they name, as run.json holds them
    (`known`: the FileHashes run.json recorded, reused for files unchanged since)."""
    name = policy_key(config.policy.name)
    table = getattr(config.policy, name, None)
    paths = [getattr(table, key) for key in MODEL_FIELDS.get(name, ())]
    paths += [config.tools.locate.model, config.tools.segment.model]
    hashes = {str(f): _hash(f, known.get(str(f))) for f in _files(p for p in paths if p)}
    settings = {
        "edge_agent": __version__,
        "no_tools": no_tools,
        "read": to_plain(config.read),
        "budget": to_plain(config.budget),
        "tools": to_plain(config.tools),
        "policy": {"name": name, name: to_plain(table)},
        "models": {path: found.sha256 for path, found in hashes.items()},
    }
    return json.loads(json.dumps(settings)), to_plain(hashes)  # as run.json gives them back


def differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The dotted names of the settings that differ ("no_tools", "policy.name")."""
    old, new = dict(_flat(before)), dict(_flat(now))
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def describe(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_DIFFERENCES])
    more = len(names) - SHOWN_DIFFERENCES
    return shown + (f" and {more} more" if more > 0 else "")


def row_of(case: Case) -> str:
    """A case's fingerprint: its whole row as read (expected answer, kind, region, files)."""
    given = {key: getattr(case, key) for key in ("image", "study", "seg")}
    files = {key: os.path.abspath(value) for key, value in given.items() if value}
    plain = to_plain(replace(case, **files))
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _files(paths: Iterator[str]) -> list[Path]:
    """Each named file; for a model folder its manifest, which names every file's SHA-256 (the
    runtime checks the files against it when it opens them, and caches it writes inside the
    folder are no part of the model); for another folder the files in it. A name that is no
    path (a profile given by name) is part of the settings already."""
    found = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif (path / MANIFEST).is_file():
            found.append(path / MANIFEST)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file())
    return found


def _hash(path: Path, known: Any) -> FileHash:
    stat = path.stat()
    try:
        recorded = from_plain(FileHash, known, str(path))
    except RecordError:  # not recorded (or not by this version): hashed now
        recorded = None
    if recorded and (recorded.bytes, recorded.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        return recorded
    return FileHash(stat.st_size, stat.st_mtime_ns, sha256_file(path))


def _flat(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping) and data:
        for key, value in data.items():
            yield from _flat(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, data
