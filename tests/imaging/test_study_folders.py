"""What a study folder holds: files in folders below it, linked folders, folders that cannot be
listed. No slice goes missing unnoticed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from imaging.study import load_study
from tests.support import ct_copies

# Root reads any folder; without these capabilities its permission bits hold for it too.
AS_OWNER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
LOAD = """
import json, sys
from imaging.study import load_study
study = load_study(sys.argv[1])
print(json.dumps({"frames": sum(len(s.frames) for s in study.series),
                  "skipped": [[str(s.path), s.reason] for s in study.skipped]}))
"""


def _series_in_two_folders(folder: Path) -> Path:
    """Five slices of one series: two in the study folder, three in `sub/`."""
    slices = ct_copies(folder, 5, "two-folders")
    (folder / "sub").mkdir()
    for path in slices[2:]:
        path.rename(folder / "sub" / path.name)
    return folder / "sub"


def test_a_folder_that_cannot_be_listed_is_named_with_its_reason(tmp_path):
    sub = _series_in_two_folders(tmp_path / "study")
    sub.chmod(0)
    try:
        command = [sys.executable, "-c", LOAD, str(tmp_path / "study")]
        done = subprocess.run(
            [*AS_OWNER, *command] if os.geteuid() == 0 else command,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        sub.chmod(0o755)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert loaded == {
        "frames": 2,
        "skipped": [[str(sub), "folder not listed: Permission denied"]],
    }
    assert f"skipped {sub}: folder not listed" in done.stderr  # the warning a reader sees


def test_a_linked_series_folder_is_read_and_a_link_back_up_adds_nothing(tmp_path):
    elsewhere = _series_in_two_folders(tmp_path / "elsewhere")
    study = tmp_path / "study"
    study.mkdir()
    for path in (tmp_path / "elsewhere").glob("*.dcm"):
        shutil.move(path, study / path.name)
    (study / "series").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "up").symlink_to(study, target_is_directory=True)  # a loop
    loaded = load_study(study)
    assert [len(s.frames) for s in loaded.series] == [5] and loaded.skipped == ()


def test_the_results_of_a_read_routed_back_with_the_study_are_never_read_as_its_images(tmp_path):
    """A PACS that forwards the study again sends our Secondary Captures (overlays burned in)
    with it: skipped, each named, and the study is read from its own images."""
    from edge_agent.config import Config
    from edge_agent.read import read_study
    from edge_agent.sample import write_sample_study

    study = write_sample_study(tmp_path / "study")
    before = load_study(study)
    result = read_study(study, tmp_path / "out", Config())
    shutil.copytree(tmp_path / "out" / "dicom", study / "from-pacs")
    after = load_study(study)
    assert [s.uid for s in after.series] == [s.uid for s in before.series]
    ours = {s.path.name: s.reason for s in after.skipped}
    captures = [p.name for p in result.dicom if p.name.startswith("sc_")]
    assert captures and all(
        ours[name] == "made by edge-agent (a result of a read), not a source image"
        for name in captures
    )


def test_a_link_up_and_a_pipe_are_named_and_neither_reads_nor_blocks(tmp_path):
    """A link to the folder above would read the study beside this one; a pipe would block the
    load for ever."""
    study = tmp_path / "study"
    ct_copies(study, 2, "one")
    ct_copies(tmp_path / "beside", 2, "another study")
    (study / "up").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(study / "pipe")
    (study / "gone").symlink_to(tmp_path / "nothing")
    loaded = load_study(study)
    assert [len(s.frames) for s in loaded.series] == [2]
    reason = "not a regular file (a pipe, a device, or a link to nothing)"
    assert sorted((s.path.name, s.reason) for s in loaded.skipped) == [
        ("gone", reason),
        ("pipe", reason),
    ]
