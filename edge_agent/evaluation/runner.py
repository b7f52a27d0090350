"""The evaluation run: every case through the same `read_study` a real read uses.

RUN/ holds run.json (what was run, and the rows left out), and per case cases/ID/ with the full
read (report.json, trajectory.json, report.html, evidence/) and result.json, written last and
atomically: a case with result.json is finished, so a run killed halfway resumes where it was.
A run resumes only with the settings it was made with, and a result stands only for the row it
was read from (edge_agent/evaluation/resume.py): a changed row is read again, and the results of
rows no longer in the case file are not counted. One bad case never stops the run: it is marked
failed with its reason."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_agent.agent import Policy
from edge_agent.config import Config
from edge_agent.evaluation.cases import LETTERS, Case, CaseSet
from edge_agent.evaluation.resume import describe, differences, row_of, run_settings
from edge_agent.evaluation.scoring import Score, score
from edge_agent.evaluation.sources import Retrieve, expected_box, study_path
from edge_agent.policies import make_policy
from edge_agent.read import read_study
from imaging.atomic import write_atomic
from imaging.errors import BadInput
from imaging.records import from_plain, to_plain
from tools.observation import Observation
from tools.registry import Tool, Toolbox
from tools.toolbox import default_toolbox

log = logging.getLogger(__name__)

RESULT = "result.json"
RUN = "run.json"
NO_TOOLS = (
    "tools are switched off in this run (the no-second-look baseline): answer from the shown images"
)


@dataclass(frozen=True)
class CaseResult:
    id: str
    kind: str
    question: str
    expected: str
    status: str  # "done" or "failed"
    reason: str = ""  # why a case failed
    read: str = ""  # the read's folder, relative to RUN/
    score: Score | None = None
    group: str = ""
    row: str = ""  # the fingerprint of the row it was read from (resume.row_of)


@dataclass(frozen=True)
class RunInfo:
    cases_file: str
    policy: str
    no_tools: bool
    cases: int
    left_out: tuple[dict, ...] = ()  # rows the case reader could not use, with the problem
    settings: Mapping[str, Any] = field(default_factory=dict)  # what every result depends on
    rows: Mapping[str, str] = field(default_factory=dict)  # case id -> its row's fingerprint
    files: Mapping[str, Any] = field(default_factory=dict)  # model file -> its resume.FileHash


CaseCallback = Callable[[CaseResult, bool], None]  # (result, resumed from an earlier run)


def open_run(case_set: CaseSet, config: Config, out: Path, *, no_tools: bool = False) -> RunInfo:
    """Start or resume the run in `out` (its run.json written); a folder made with other
    settings is refused before anything in it changes."""
    before = load_run_info(out)
    settings, files = run_settings(config, no_tools, before.files if before else {})
    changed = differences(before.settings, settings) if before else []
    if changed:
        raise RunFolderError(
            f"{out} was made with other settings ({describe(changed)}): use a new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    info = RunInfo(
        case_set.source,
        config.policy.name,
        no_tools,
        len(case_set.cases),
        tuple({"row": p.where, "problem": p.problem} for p in case_set.problems),
        settings,
        {case.id: row_of(case) for case in case_set.cases},
        files,
    )
    _write_json(out / RUN, to_plain(info))
    return info


def run_eval(
    case_set: CaseSet,
    config: Config,
    out: Path,
    *,
    no_tools: bool = False,
    policy: Policy | None = None,
    toolbox: Toolbox | None = None,
    retrieve: Retrieve | None = None,
    on_case: CaseCallback | None = None,
    opened: RunInfo | None = None,
) -> list[CaseResult]:
    """Read every case not finished in `out` yet; return all results in case order. `opened`:
    what `open_run` gave, when the caller opened the run itself."""
    config = replace(config, report=replace(config.report, dicom=False))  # JSON/HTML suffice
    info = opened or open_run(case_set, config, out, no_tools=no_tools)
    results = []
    with ExitStack() as owned:
        for case in case_set.cases:
            finished = load_result(out, case.id)
            if finished is not None and finished.row == info.rows[case.id]:
                results.append(finished)
                if on_case:
                    on_case(finished, True)
                continue
            if policy is None:  # loaded once, on the first case that needs it
                policy = make_policy(config.policy)
                owned.callback(policy.close)
            if toolbox is None:
                toolbox = default_toolbox(config.tools)
                owned.callback(toolbox.close)
            used = refusing(toolbox) if info.no_tools else toolbox
            result = _run_case(case, config, out, policy, used, retrieve)
            _write_json(out / "cases" / case.id / RESULT, to_plain(result))
            results.append(result)
            if on_case:
                on_case(result, False)
    return results


def _run_case(
    case: Case, config: Config, out: Path, policy, toolbox, retrieve: Retrieve | None
) -> CaseResult:
    folder = out / "cases" / case.id
    read_dir = folder / "read"
    shutil.rmtree(folder, ignore_errors=True)  # a case killed halfway starts again, clean
    base = CaseResult(
        case.id,
        case.kind,
        case.question,
        _expected(case),
        "failed",
        group=case.group,
        row=row_of(case),
    )
    try:
        source = study_path(case, folder, retrieve)
        region = expected_box(case)
        read = read_study(
            source, read_dir, config, question=asked(case), policy=policy, toolbox=toolbox
        )
    except BadInput as exc:
        log.warning("case %s failed: %s", case.id, exc)
        return replace(base, reason=str(exc))
    except Exception as exc:  # our bug or a back end's: the case fails, the run goes on
        log.exception("case %s failed with an internal error", case.id)
        return replace(base, reason=f"internal error: {type(exc).__name__}: {exc}")
    trajectory = json.loads((read_dir / "trajectory.json").read_text(encoding="utf-8"))
    scored = score(case, read.report, trajectory, region)
    return replace(base, status="done", read=f"cases/{case.id}/read", score=scored)


def asked(case: Case) -> str:
    """What the policy is asked: a multiple-choice question carries its lettered options (unless
    its text already lists them, as MedXpertQA's does), so the reply can name a letter."""
    if case.kind != "choice" or all(option in case.question for option in case.options):
        return case.question
    lines = [f"{LETTERS[i]}. {option}" for i, option in enumerate(case.options)]
    return "\n".join([case.question, "Options:", *lines])


def _expected(case: Case) -> str:
    if case.kind == "choice":
        return f"{case.answer}: {case.options[ord(case.answer) - ord('A')]}"
    if case.answer:
        return case.answer
    parts = [f"box {list(case.box)}" if case.box else "", f"SEG {case.seg}" if case.seg else ""]
    parts += [f"{m.name} {m.value:g} {m.unit} ± {m.tolerance:g}" for m in case.measurements]
    return "; ".join(p for p in parts if p)


def refusing(toolbox: Toolbox) -> Toolbox:
    """The same tools and schemas (prompts and grammars stay), each refusing to run: the policy
    must answer from the shown images alone."""

    def refuse(arguments, workspace) -> Observation:
        return Observation.failure(NO_TOOLS)

    return Toolbox(
        Tool(name, toolbox[name].description, toolbox[name].parameters, refuse)
        for name in toolbox.names
    )


class RunFolderError(BadInput):
    """A run folder holds a result file that is damaged or from another version."""


def load_result(out: Path, case_id: str) -> CaseResult | None:
    path = out / "cases" / case_id / RESULT
    if not path.exists():
        return None
    try:
        return from_plain(CaseResult, json.loads(path.read_text(encoding="utf-8")), str(path))
    except (ValueError, UnicodeDecodeError) as exc:  # JSON or record errors: a damaged run
        raise RunFolderError(f"{path} is not a case result this version reads: {exc}") from None


def load_run_info(out: Path) -> RunInfo | None:
    """What run.json says of the run; None for a folder no run has written yet."""
    path = out / RUN
    if not path.exists():
        return None
    try:
        return from_plain(RunInfo, json.loads(path.read_text(encoding="utf-8")), str(path))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path} is not a run this version reads: {exc}") from None


def load_results(out: Path) -> list[CaseResult]:
    """Every finished case of the run's case file, in its order: a result read from a row since
    changed or removed is not counted."""
    info = load_run_info(out)
    if info is None:
        raise RunFolderError(f"{out} has no {RUN}: not a folder `eval run` wrote")
    found = ((load_result(out, case_id), row) for case_id, row in info.rows.items())
    return [result for result, row in found if result is not None and result.row == row]


def _write_json(path: Path, data) -> None:
    """Complete or absent: a kill during the write leaves no half result behind."""
    write_atomic(path, json.dumps(data, indent=2).encode("utf-8"))
