"""What the console script's process does around a read besides the read itself: the cyclic
garbage collector never walks what it holds."""

from __future__ import annotations

from pathlib import Path

from tests.support import console_script


def test_a_read_makes_no_collection(sample_study: Path, tmp_path: Path):
    """The imports and highdicom's tables of the standard (loaded by the first DICOM object a
    process writes) live to the end of the process and a read leaves almost no cycles: a
    collection finds next to nothing, yet with Python's defaults the imports and the tables set
    off collections of the whole heap, and a read some of the young objects. The watch starts
    once the console script's module is imported, as main() starts."""
    out, log = tmp_path / "out", tmp_path / "collections.txt"
    watch = (
        "import gc\n"
        "import edge_agent.cli.app\n"
        f"def note(phase, info, log={str(log)!r}):\n"
        "    if phase == 'stop':\n"
        "        with open(log, 'a') as sink:\n"
        "            sink.write(f\"generation {info['generation']}\\n\")\n"
        "gc.callbacks.append(note)\n"
    )
    done = console_script(watch, "read", str(sample_study), "--policy", "protocol", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "dicom" / "sr.dcm").is_file()  # the DICOM writers ran, tables and all
    assert not log.exists(), log.read_text()
