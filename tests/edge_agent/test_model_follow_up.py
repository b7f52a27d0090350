"""Follow-up questions on a model read continue its KV cache: in the reading process
(`read --interactive`) and in another one (`ask`, from the state `read --keep-session` saved).
The tiny random-weight GGUF built by our own export; real llama.cpp."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from edge_agent.policies.session import END_OF_REPLY, SessionState
from edge_agent.trajectory import Trajectory
from tests.peers import dciodvfy_errors
from tests.support import model_options, run_cli

FIRST = "And the left kidney?"
SECOND = "Measure the second one again."
CONFIG = """
[budget]
max_turns = 2
max_new_tokens = 256
"""


def read_folder(tmp_path_factory, name: str) -> tuple[Path, Path, Path]:
    """For a model read: the sample study, a short configuration, and where its result goes."""
    from edge_agent.sample import write_sample_study

    folder = tmp_path_factory.mktemp(name)
    study = write_sample_study(folder / "study")
    config = folder / "edge-agent.toml"
    config.write_text(CONFIG)
    return study, config, folder / "out"


@pytest.fixture(scope="module")
def interactive(exported, tmp_path_factory) -> dict:
    """A model read with one follow-up typed after the answer, its session kept."""
    study, config, out = read_folder(tmp_path_factory, "model-ask")
    script = Path(sys.executable).parent / "edge-agent"
    command = [script, "read", study, "--out", out, "--config", config, *model_options(exported)]
    done = subprocess.run(
        [str(c) for c in [*command, "--interactive", "--keep-session"]],
        input=f"{FIRST}\n\n",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return {"out": out, "config": config, "done": done, "sr": _sr(out)}


def _sr(out: Path) -> pydicom.Dataset:
    return pydicom.dcmread(out / "dicom" / "sr.dcm")


def _question_tokens(exported: Path, question: str) -> int:
    """The follow-up turn as the chat template frames it, in the model's own tokens."""
    from llama_cpp import Llama

    vocab = Llama(str(exported / "model-q8_0.gguf"), vocab_only=True, verbose=False)
    turn = f"{END_OF_REPLY}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    return len(vocab.tokenize(turn.encode(), add_bos=False, special=True))


def _first_turn(trajectory: Trajectory, number: int):
    """The usage of follow-up `number`'s first turn: its first step's, or its answer's."""
    follow_up = trajectory.follow_ups[number]
    if follow_up.steps:
        return trajectory.steps[follow_up.steps[0] - 1].usage
    return follow_up.usage


def _cached_before(trajectory: Trajectory, usage) -> int:
    """What the KV cache held before the turn of `usage`: the turn before it, and its reply."""
    turns = [s.usage for s in trajectory.steps if s.usage]
    turns += [a.usage for a in (trajectory.answer, *trajectory.follow_ups) if a and a.usage]
    earlier = max((u for u in turns if u.past < usage.past), key=lambda u: u.past)
    return earlier.past + earlier.prompt_tokens + earlier.generated


def test_a_follow_up_in_the_reading_process_evaluates_only_its_question(interactive, exported):
    trajectory = Trajectory.load(interactive["out"] / "trajectory.json")
    (follow_up,) = trajectory.follow_ups
    assert follow_up.question == FIRST and follow_up.end_reason in ("answer", "max_turns")
    usage = _first_turn(trajectory, 0)
    # after everything the read put in the KV cache, only the question's turn is evaluated
    assert usage.past == _cached_before(trajectory, usage) > 2000
    assert usage.prompt_tokens == _question_tokens(exported, FIRST)
    assert usage.prompt_evaluated == usage.prompt_tokens and usage.images == 0
    assert usage.generated > 0
    # the model may call tools again: its steps join the trajectory after the read's
    assert all(n > 2 for n in follow_up.steps) and len(trajectory.steps) == 2 + len(follow_up.steps)
    report = json.loads((interactive["out"] / "report.json").read_text())
    assert [f["question"] for f in report["follow_ups"]] == [FIRST]
    assert report["follow_ups"][0]["answer"] == follow_up.answer
    assert f"Q1: {FIRST}" in interactive["done"].stdout
    page = (interactive["out"] / "report.html").read_text()
    assert FIRST in page
    number = follow_up.steps[0]  # the trail says which question a step was taken for
    assert f"Step {number}: <code>zoom_in</code> (for follow-up Q1)</h3>" in page


def test_how_the_read_ended_counts_only_the_reads_own_steps(interactive):
    from dataclasses import replace

    from edge_agent.report.location import how_it_ended

    trajectory = Trajectory.load(interactive["out"] / "trajectory.json")
    assert len(trajectory.steps) == 4  # the read's 2, then the follow-up's
    answered = replace(trajectory, end_reason="answer")
    assert how_it_ended(answered) == "The policy answered after 2 tool call(s)."


def test_the_session_is_saved_beside_the_result(interactive, exported):
    saved = json.loads((interactive["out"] / "session" / "session.json").read_text())
    state = interactive["out"] / "session" / saved["state"]
    assert state.stat().st_size == saved["bytes"] > 0
    assert saved["model"] == str((exported / "model-q8_0.gguf").resolve())
    trajectory = Trajectory.load(interactive["out"] / "trajectory.json")
    assert saved["sha256"] == trajectory.policy.model["sha256"]
    assert "session: " in interactive["done"].stdout


def test_ask_in_another_process_continues_the_saved_session(interactive, exported):
    out = interactive["out"]
    before = _sr(out)
    done = run_cli("ask", out, SECOND, "--config", interactive["config"])
    assert done.returncode == 0, done.stderr
    trajectory = Trajectory.load(out / "trajectory.json")
    assert [f.question for f in trajectory.follow_ups] == [FIRST, SECOND]
    usage = _first_turn(trajectory, 1)
    # the saved KV cache was loaded: the whole transcript is past, only the question evaluated
    assert usage.past == _cached_before(trajectory, usage)
    assert usage.prompt_tokens == _question_tokens(exported, SECOND)
    assert usage.prompt_evaluated == usage.prompt_tokens
    report = json.loads((out / "report.json").read_text())
    assert [f["question"] for f in report["follow_ups"]] == [FIRST, SECOND]
    after = _sr(out)  # a new SR version that names the one it replaces
    assert after.SOPInstanceUID != before.SOPInstanceUID
    reference = after.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert reference.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == before.SOPInstanceUID
    assert after.StudyInstanceUID == before.StudyInstanceUID
    assert dciodvfy_errors(out / "dicom" / "sr.dcm") == []


def test_a_session_saved_for_another_model_is_refused_in_one_line(interactive, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(interactive["out"], copy)
    meta = copy / "session" / "session.json"
    saved = json.loads(meta.read_text())
    meta.write_text(json.dumps({**saved, "sha256": "0" * 64}))
    done = run_cli("ask", copy, SECOND, "--config", interactive["config"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "saved for another model than the read's" in done.stderr


def test_a_session_saved_by_an_older_version_is_sent_to_read_again(interactive, tmp_path):
    """session.json before it recorded its token count: not a mismatch of two saves."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(interactive["out"], copy)
    meta = copy / "session" / "session.json"
    saved = json.loads(meta.read_text())
    del saved["tokens"], saved["next_position"]
    meta.write_text(json.dumps(saved))
    done = run_cli("ask", copy, SECOND, "--config", interactive["config"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "older version of edge-agent" in done.stderr and "--keep-session" in done.stderr
    assert "not saved together" not in done.stderr


@contextlib.contextmanager
def _onnx_read_opened(onnx_llm, tmp_path):
    """The tiny ONNX model's read of the sample study, opened for follow-ups as `read
    --interactive` keeps it: (the read's result, the open read)."""
    from edge_agent.model_followup import OpenRead
    from edge_agent.policies import make_policy
    from edge_agent.read import read_study
    from edge_agent.sample import write_sample_study
    from tests.edge_agent.test_onnx_policy import _config
    from tools.toolbox import default_toolbox

    config = _config(onnx_llm)
    policy, toolbox = make_policy(config.policy), default_toolbox(config.tools)
    try:
        study = write_sample_study(tmp_path / "study")
        result = read_study(study, tmp_path / "out", config, policy=policy, toolbox=toolbox)
        yield result, OpenRead(policy, result.trajectory, result.workspace, toolbox, config.budget)
    finally:
        policy.close()
        toolbox.close()


def test_the_onnx_back_end_continues_its_kept_cache_for_a_follow_up(onnx_llm, tmp_path):
    with _onnx_read_opened(onnx_llm, tmp_path) as (_, opened):
        trajectory = opened.ask(FIRST)
        usage = _first_turn(trajectory, 0)
        turn = f"{END_OF_REPLY}<|im_start|>user\n{FIRST}<|im_end|>\n<|im_start|>assistant\n"
    # the checkpoint's own tokenizer, as the export copied it beside the graphs
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(onnx_llm / "tokenizer.json"))
    expected = len(tokenizer.encode(turn, add_special_tokens=False).ids)
    assert usage.past == _cached_before(trajectory, usage) > 100
    assert usage.prompt_evaluated == usage.prompt_tokens == expected


def test_a_model_follow_up_is_in_trajectory_json_even_when_its_reports_fail(
    onnx_llm, tmp_path, monkeypatch
):
    """The reports read the source's headers; when that fails (here: no file handles left),
    the follow-up the model's cache now holds is already in trajectory.json."""
    import errno

    import edge_agent.replay
    from edge_agent.cli.ask import answer_and_show
    from edge_agent.cli.config import FileConfig

    def exhausted(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(edge_agent.replay, "source_headers", exhausted)
    with (
        _onnx_read_opened(onnx_llm, tmp_path) as (result, opened),
        pytest.raises(OSError, match="Too many open files"),
    ):
        answer_and_show(result.out_dir, FIRST, FileConfig(), pdf=False, opened=opened)
    saved = Trajectory.load(result.out_dir / "trajectory.json")
    assert [f.question for f in saved.follow_ups] == [FIRST]


def test_an_onnx_read_in_another_process_is_sent_to_read_interactive(interactive, tmp_path):
    copy = tmp_path / "onnx-read"
    copy.mkdir()
    trajectory = json.loads((interactive["out"] / "trajectory.json").read_text())
    trajectory["policy"] = {**trajectory["policy"], "name": "onnx_trt", "label": "AI model m"}
    (copy / "trajectory.json").write_text(json.dumps(trajectory))
    done = run_cli("ask", copy, SECOND)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "read --interactive" in done.stderr


def test_a_read_that_ended_in_a_policy_error_takes_no_follow_up(exported, tmp_path):
    from edge_agent.model_followup import OpenRead
    from edge_agent.policies import make_policy
    from edge_agent.read import read_study
    from edge_agent.sample import write_sample_study
    from imaging.errors import BadInput
    from tests.edge_agent.test_llama_policy import _config
    from tools.toolbox import default_toolbox

    config = _config(exported, n_ctx=768)  # the first turn does not fit
    policy, toolbox = make_policy(config.policy), default_toolbox(config.tools)
    try:
        study = write_sample_study(tmp_path / "study")
        result = read_study(study, tmp_path / "out", config, policy=policy, toolbox=toolbox)
        assert result.trajectory.end_reason == "policy_error"
        opened = OpenRead(policy, result.trajectory, result.workspace, toolbox, config.budget)
        with pytest.raises(BadInput, match=r"ended with a policy error.*context full"):
            opened.ask(FIRST)
    finally:
        policy.close()
        toolbox.close()


def test_the_session_records_the_tokens_its_trajectory_ends_with(interactive):
    saved = json.loads((interactive["out"] / "session" / "session.json").read_text())
    trajectory = Trajectory.load(interactive["out"] / "trajectory.json")
    assert saved["tokens"] == SessionState.of(trajectory).cached > 2000
    # M-RoPE images take fewer positions than tokens
    assert 0 < saved["next_position"] < saved["tokens"]
    assert not list((interactive["out"] / "session").glob(".*.tmp"))


def test_a_session_and_a_trajectory_from_different_saves_are_refused(interactive, tmp_path):
    """What a crash leaves between saving the session and writing the trajectory (or a state
    file copied from another save): `ask` names the mismatch instead of continuing it."""
    import shutil

    before = tmp_path / "before"
    shutil.copytree(interactive["out"], before)
    after = tmp_path / "after"
    shutil.copytree(interactive["out"], after)
    done = run_cli("ask", after, SECOND, "--config", interactive["config"])
    assert done.returncode == 0, done.stderr
    # the session saved with the answer, the trajectory as it was before it
    shutil.copy(before / "trajectory.json", after / "trajectory.json")
    done = run_cli("ask", after, SECOND, "--config", interactive["config"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "KV cache of" in done.stderr and "not saved together" in done.stderr
    # trajectory and session.json of one save, the state file of another
    shutil.copy(after / "session" / "kv-seq0.bin", before / "session" / "kv-seq0.bin")
    done = run_cli("ask", before, SECOND, "--config", interactive["config"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "kv-seq0.bin ends at KV position" in done.stderr and "not the one saved" in done.stderr


def test_a_session_kept_for_a_study_from_pacs_can_be_asked_later(exported, tmp_path):
    """The retrieved study stays in OUT/study/, where the trajectory names it."""
    from edge_agent.sample import write_sample_study
    from tests.peers import Orthanc

    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        study = write_sample_study(tmp_path / "study")
        uid = orthanc.upload(study)
        config = tmp_path / "edge-agent.toml"
        config.write_text(CONFIG)
        out = tmp_path / "out"
        pacs = ["--pacs", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--study", uid]
        options = ["--out", out, "--config", config, *model_options(exported)]
        done = run_cli("read", *pacs, *options, "--keep-session")
        assert done.returncode == 0, done.stderr
    finally:
        orthanc.stop()
    trajectory = Trajectory.load(out / "trajectory.json")
    assert Path(trajectory.source_path) == (out / "study").resolve()
    assert len(list((out / "study").rglob("*.dcm"))) == len(list(study.iterdir()))
    done = run_cli("ask", out, FIRST, "--config", config)
    assert done.returncode == 0, done.stderr
    assert [f.question for f in Trajectory.load(out / "trajectory.json").follow_ups] == [FIRST]
    # a second read into the same folder would mix two retrievals: refused before retrieving
    done = run_cli("read", *pacs, *options, "--keep-session")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{out / 'study'} is not empty" in done.stderr
