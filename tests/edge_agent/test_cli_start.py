"""What the console script's process does around a read besides the read itself: the cyclic
garbage collector never walks what it holds."""

from __future__ import annotations

from pathlib import Path

from tests.support import console_script


def _collections(log: Path, *argv: str) -> list[str]:
    """The collections the console script runs `argv` with, watched from when its module is
    imported, as main() starts."""
    watch = (
        "import gc\n"
        "import edge_agent.cli.app\n"
        f"def note(phase, info, log={str(log)!r}):\n"
        "    if phase == 'stop':\n"
        "        with open(log, 'a') as sink:\n"
        "            sink.write(f\"generation {info['generation']}\\n\")\n"
        "gc.callbacks.append(note)\n"
    )
    done = console_script(watch, *argv)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines() if log.exists() else []


def test_a_read_makes_no_collection(sample_study: Path, tmp_path: Path):
    """The imports and highdicom's tables of the standard (loaded by the first DICOM object a
    process writes) live to the end of the process and a read leaves almost no cycles: a
    collection finds next to nothing, yet with Python's defaults the imports and the tables set
    off collections of the whole heap, and a read some of the young objects."""
    out = tmp_path / "out"
    argv = ("read", str(sample_study), "--policy", "protocol", "-o", str(out))
    assert _collections(tmp_path / "collections.txt", *argv) == []
    assert (out / "dicom" / "sr.dcm").is_file()  # the DICOM writers ran, tables and all


def test_a_replay_makes_no_collection(sample_study: Path, tmp_path: Path):
    """A replay writes the same objects from the read's files: the same tables, as few cycles."""
    out, again = tmp_path / "out", tmp_path / "again"
    read = console_script("", "read", str(sample_study), "--policy", "protocol", "-o", str(out))
    assert read.returncode == 0, read.stderr
    argv = ("replay", str(out / "trajectory.json"), "-o", str(again))
    assert _collections(tmp_path / "collections.txt", *argv) == []
    assert (again / "dicom" / "sr.dcm").is_file()
