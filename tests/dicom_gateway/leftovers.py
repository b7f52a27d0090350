"""What a spool's temporary folder holds beside the empty files created ahead for data sets."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path


def holding_data(folder: Path) -> list[Path]:
    """The temporary files with data in them: a data set being received, or one left behind."""
    found = []
    for path in folder.glob("*.part"):
        with suppress(FileNotFoundError):  # taken, renamed or discarded meanwhile
            if path.stat().st_size:
                found.append(path)
    return found
