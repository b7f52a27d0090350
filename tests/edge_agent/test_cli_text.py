"""What a user, a model, a configuration or a path says is printed as it is: square brackets in
a question, a thought or a folder name are text on the terminal, never rich markup."""

from __future__ import annotations

from pathlib import Path

from tests.support import run_cli


def test_a_folder_name_with_brackets_is_printed_as_it_is(sample_study: Path, tmp_path: Path):
    out = tmp_path / "out[ct]"
    done = run_cli("read", sample_study, "--out", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == f"report: {out / 'report.html'}"


def test_a_follow_up_question_with_brackets_is_asked_and_shown_as_typed(
    sample_study: Path, tmp_path: Path
):
    out = tmp_path / "out"
    assert run_cli("read", sample_study, "--out", out).returncode == 0
    question = "Which candidates [/] are larger than [bold]20 mm[/]?"
    done = run_cli("ask", out, question)
    assert done.returncode == 0, done.stderr
    assert f"Q1: {question}" in done.stdout
    assert "Traceback" not in done.stderr


def test_text_of_a_step_with_brackets_is_shown_on_the_trail_as_it_is(
    sample_study: Path, tmp_path: Path
):
    """The captions come from the configuration into the call and the thought of the locate
    step, as a model's would."""
    config = tmp_path / "edge-agent.toml"
    config.write_text(
        '[policy.protocol]\nct_captions = ["hypodense region [left lobe]", "hyperdense [/]"]\n'
    )
    done = run_cli("read", sample_study, "--out", tmp_path / "out", "--config", config)
    assert done.returncode == 0, done.stderr
    assert (
        " 2 locate(index=3, captions=['hypodense region [left lobe]', 'hyperdense [/]'])\n"
        "    Look for candidate regions: hypodense region [left lobe], hyperdense [/].\n"
    ) in done.stdout
