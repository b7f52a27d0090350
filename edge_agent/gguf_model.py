"""The two GGUF files the llama_cpp policy loads (text model and mmproj), checked before llama.cpp
sees them: each must be a GGUF file, and where it lies in a folder written by `export gguf` (a
manifest.json beside it) it must be the file that manifest lists, unchanged.

A bare GGUF without a manifest still loads: llama.cpp's own releases and hand-quantized files come
without one, and refusing them would only push people to fake a manifest. Such a file is logged as
unverified, and its SHA-256 is still what the report names. A manifest that is there is a claim,
though: a damaged, mismatched or unlisted file beside it is a ModelLoadError."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from imaging.checksum import sha256_file
from imaging.errors import ModelLoadError
from imaging.model_folder import MANIFEST, ModelFolder

log = logging.getLogger(__name__)

FORMAT = "edge-agent gguf export 1"
MAGIC = b"GGUF"


@dataclass(frozen=True)
class GgufFiles:
    """The checked pair: their hashes, and the prompt profile their manifest names ("" if none)."""

    sha256: str
    mmproj_sha256: str
    profile: str
    verified: bool  # both files matched a manifest


def checked_gguf(model: Path, mmproj: Path) -> GgufFiles:
    """Both files are GGUF and, where a manifest lies beside them, match it."""
    text_hash, text_folder = _checked(Path(model), "text")
    mmproj_hash, mmproj_folder = _checked(Path(mmproj), "mmproj")
    profile = text_folder.manifest.profile if text_folder else ""
    return GgufFiles(text_hash, mmproj_hash, profile, bool(text_folder and mmproj_folder))


def mmproj_of(folder: Path) -> Path:
    """The mmproj file the manifest of an `export gguf` folder lists."""
    model_folder = _folder(folder)
    return model_folder.path / model_folder.entry("mmproj").name


def _folder(path: Path) -> ModelFolder:
    return ModelFolder.read(path, FORMAT, what="GGUF model folder")


def _checked(path: Path, role: str) -> tuple[str, ModelFolder | None]:
    with open(path, "rb") as handle:
        head = handle.read(len(MAGIC))
    if head != MAGIC:
        raise ModelLoadError(
            f"{path} is not a GGUF file (it starts with {head!r}, not {MAGIC!r}); give the "
            "files `edge-agent export gguf` wrote"
        )
    if not (path.parent / MANIFEST).is_file():
        log.warning("%s: no %s beside it, so it is not verified against an export", path, MANIFEST)
        return sha256_file(path), None
    folder = _folder(path.parent)
    entry = folder.named(path.name)
    if entry.role != role:
        raise ModelLoadError(f"{path} is the export's {entry.role} file, not its {role}")
    folder.check(entry)
    return entry.sha256, folder
