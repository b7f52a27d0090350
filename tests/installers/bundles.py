"""Helpers for tests that change a bundle's files."""

from __future__ import annotations

import hashlib
from pathlib import Path


def rewrite_checksums(root: Path) -> None:
    """SHA256SUMS for the bundle's files as they are now (as `bundle` writes it)."""
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root)}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("SHA256SUMS", "SHA256SUMS.sig")
    ]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
