"""What the console script's process does around a read besides the read itself: it never makes
the collector walk everything it holds."""

from __future__ import annotations

from pathlib import Path

from tests.support import console_script


def test_a_read_makes_no_collection_of_the_whole_heap(sample_study: Path, tmp_path: Path):
    """The imports and highdicom's tables of the standard (loaded by the first DICOM object a
    process writes) live to the end of the process: collecting while they are made finds
    nothing, yet with Python's defaults they set off collections of the oldest generation, which
    walk every object the process holds."""
    out, log = tmp_path / "out", tmp_path / "oldest-generation.txt"
    watch = (
        "import gc\n"
        f"def note(phase, info, log={str(log)!r}):\n"
        "    if phase == 'stop' and info['generation'] == 2:\n"
        "        with open(log, 'a') as sink:\n"
        "            sink.write('collected\\n')\n"
        "gc.callbacks.append(note)\n"
    )
    done = console_script(watch, "read", str(sample_study), "--policy", "protocol", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "dicom" / "sr.dcm").is_file()  # the DICOM writers ran, tables and all
    assert not log.exists(), f"{len(log.read_text().splitlines())} collection(s)"
