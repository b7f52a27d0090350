"""`ask` on a model read continues it as it was read, whatever the configuration says now: the
read's prompt profile and images. The tiny random-weight GGUF built by our own export; real
llama.cpp, through the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_agent.trajectory import Trajectory
from tests.edge_agent.test_model_follow_up import CONFIG, FIRST, _first_turn, read_folder
from tests.support import model_options, run_cli

PROFILE = "ophiuchus-v1-sft"  # not the one the model folder names (ophiuchus-v1)


@pytest.fixture(scope="module")
def profiled(exported, tmp_path_factory) -> dict:
    """A model read with `--profile` and `--keep-session`, no follow-up asked yet."""
    study, config, out = read_folder(tmp_path_factory, "model-ask-settings")
    options = ["--out", out, "--config", config, *model_options(exported)]
    done = run_cli("read", study, *options, "--profile", PROFILE, "--keep-session")
    assert done.returncode == 0, done.stderr
    return {"out": out, "config": config, "study": study}


def _copy(profiled: dict, tmp_path) -> tuple:
    copy = tmp_path / "out"
    shutil.copytree(profiled["out"], copy)
    return copy, profiled["config"]


def test_ask_continues_with_the_reads_prompt_profile(profiled, tmp_path):
    out, config = _copy(profiled, tmp_path)
    read = Trajectory.load(out / "trajectory.json")
    assert read.policy.prompt_profile == PROFILE
    done = run_cli("ask", out, FIRST, "--config", config)
    assert done.returncode == 0, done.stderr
    asked = Trajectory.load(out / "trajectory.json")
    assert [f.question for f in asked.follow_ups] == [FIRST]
    assert _first_turn(asked, 0).prompt_profile == PROFILE


def test_an_older_session_continues_with_the_profile_its_trajectory_names(profiled, tmp_path):
    """session.json saved before it recorded the profile: the shipped profile the read names."""
    import json

    out, config = _copy(profiled, tmp_path)
    meta = out / "session" / "session.json"
    saved = json.loads(meta.read_text())
    del saved["profile"]
    meta.write_text(json.dumps(saved))
    done = run_cli("ask", out, FIRST, "--config", config)
    assert done.returncode == 0, done.stderr
    assert _first_turn(Trajectory.load(out / "trajectory.json"), 0).prompt_profile == PROFILE


def test_a_session_whose_read_settings_are_cut_is_refused_as_damaged(profiled, tmp_path):
    import json

    out, config = _copy(profiled, tmp_path)
    meta = out / "session" / "session.json"
    saved = json.loads(meta.read_text())
    del saved["shown_with"]["key_frames"]
    meta.write_text(json.dumps(saved))
    done = run_cli("ask", out, FIRST, "--config", config)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {meta} is damaged: ShownWith.__init__() missing 1 required positional "
        "argument: 'key_frames'"
    ]


def test_a_session_left_by_another_read_is_refused_in_one_line(profiled, exported, tmp_path):
    """Another read of the same study, as long in tokens: its session beside this read's
    trajectory is refused by the read it names, not continued."""
    out, config = _copy(profiled, tmp_path)
    other = tmp_path / "other"
    options = ["--out", other, "--config", config, *model_options(exported)]
    done = run_cli("read", profiled["study"], *options, "--profile", PROFILE, "--keep-session")
    assert done.returncode == 0, done.stderr
    shutil.rmtree(out / "session")
    shutil.copytree(other / "session", out / "session")
    before = (out / "trajectory.json").read_text()
    done = run_cli("ask", out, FIRST, "--config", config)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "belongs to another read" in done.stderr
    assert Trajectory.load(other / "trajectory.json").started_at in done.stderr
    assert (out / "trajectory.json").read_text() == before


FIVE_KEY_FRAMES = (
    CONFIG
    + """
[read]
key_frames = 5
"""
)


def _originals(out):
    """The read's first images, as its trajectory records them and as their PNGs are."""
    trajectory = Trajectory.load(out / "trajectory.json")
    shown = [record for record in trajectory.images if record.step is None]
    return shown, [(out / record.file).read_bytes() for record in shown]


def test_ask_rebuilds_the_images_with_the_reads_settings_not_the_configs(profiled, tmp_path):
    out, _ = _copy(profiled, tmp_path)
    config = tmp_path / "five.toml"  # the read showed the default 3 key frames of 5 slices
    config.write_text(FIVE_KEY_FRAMES)
    before = _originals(out)
    assert len(before[0]) == 3
    done = run_cli("ask", out, FIRST, "--config", config)
    assert done.returncode == 0, done.stderr
    assert _originals(out) == before
    asked = Trajectory.load(out / "trajectory.json")
    made = [record for record in asked.images if record.step is not None]
    assert all(record.index >= 3 for record in made)  # no new "shown" image the model never saw


def test_an_older_session_rebuilt_differently_is_refused_before_anything_is_written(
    profiled, tmp_path
):
    """session.json saved before it recorded the read's settings, asked with other settings:
    the rebuilt images are not the read's, said in one line, and nothing changes."""
    import json

    out, _ = _copy(profiled, tmp_path)
    meta = out / "session" / "session.json"
    saved = json.loads(meta.read_text())
    saved.pop("shown_with", None)
    meta.write_text(json.dumps(saved))
    config = tmp_path / "five.toml"
    config.write_text(FIVE_KEY_FRAMES)
    files = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    done = run_cli("ask", out, FIRST, "--config", config)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "shown 3 image(s) at its start, but the study and these settings show 5" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == files


OVERVIEW_15 = (
    CONFIG
    + """
[read]
overview_frames = 15
"""
)


@pytest.fixture(scope="module")
def cine(exported, tmp_path_factory) -> Path:
    """A model read of a DICOM video with a 15-frame overview (not the default 16), kept."""
    from tests.videos import encode, video_study

    folder = tmp_path_factory.mktemp("model-ask-cine")
    config = folder / "site.toml"
    config.write_text(OVERVIEW_15)
    study = video_study(folder / "study", encode("h264"))
    out = folder / "out"
    options = ["--out", out, "--config", config, *model_options(exported)]
    done = run_cli("read", study, *options, "--keep-session")
    assert done.returncode == 0, done.stderr
    return out


def test_ask_without_the_reads_config_rebuilds_its_overview(cine, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(cine, out)
    (sheet,) = [r for r in Trajectory.load(out / "trajectory.json").images if r.step is None]
    assert len(sheet.frames) == 15
    done = run_cli("ask", out, FIRST)  # as a user asks later: no --config
    assert done.returncode == 0, done.stderr
    asked = Trajectory.load(out / "trajectory.json")
    assert asked.images[0] == sheet and [f.question for f in asked.follow_ups] == [FIRST]
    again = run_cli("ask", out, FIRST)  # and the session saved with it takes the next
    assert again.returncode == 0, again.stderr
    asked = Trajectory.load(out / "trajectory.json")
    assert asked.images[0] == sheet and [f.question for f in asked.follow_ups] == [FIRST, FIRST]


def test_an_older_session_whose_overview_differs_says_which_frames(cine, tmp_path):
    import json

    out = tmp_path / "out"
    shutil.copytree(cine, out)
    meta = out / "session" / "session.json"
    saved = json.loads(meta.read_text())
    saved.pop("shown_with", None)
    meta.write_text(json.dumps(saved))
    before = (out / "trajectory.json").read_bytes(), meta.read_bytes()
    done = run_cli("ask", out, FIRST)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "evidence/000_shown.png) is not rebuilt as it was shown: contact sheet frames (1, " in (
        done.stderr
    )
    assert ((out / "trajectory.json").read_bytes(), meta.read_bytes()) == before
