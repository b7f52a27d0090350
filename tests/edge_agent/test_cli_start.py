"""What the console script's process does around a read besides the read itself: it imports
only what a protocol read uses, and never makes the collector walk everything it holds."""

from __future__ import annotations

import json
from pathlib import Path

from tests.edge_agent.test_cli_exit import console_script

# What only a model read needs: prompt formats, the model session, the decoders' back ends.
MODEL_MODULES = (
    "edge_agent.policies.llama_cpp",
    "edge_agent.policies.onnx_trt",
    "edge_agent.policies.session",
    "edge_agent.formats",
)


def test_a_protocol_read_runs_without_the_model_policies_modules(
    sample_study: Path, tmp_path: Path
):
    """The configuration holds every policy's settings; a protocol read imports none of the
    model policies' code (an import of any of them fails here)."""
    out = tmp_path / "out"
    blocked = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in MODEL_MODULES)
    done = console_script(
        blocked, "read", str(sample_study), "--policy", "protocol", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "report.json").read_text())["findings"]


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
