"""Second-look cases read by a policy through the real read path (PNG -> one-image study ->
`read_study`, as `edge-agent eval` reads a case), scored as a user would check them: the option
letter answered, and how well the first Zoom-in box overlaps the lesion (IoU in source pixels).
Used by the tests, `doctor`'s known-answer check and `export train-tiny-agent`."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from edge_agent.agent import Policy
from edge_agent.config import Config, PolicySettings
from edge_agent.evaluation.scoring import iou as box_iou
from edge_agent.evaluation.scoring import option_letter
from edge_agent.gguf_model import mmproj_of
from edge_agent.read import read_study
from export.look_samples import case_study
from export.second_look import OPTIONS, SHOWN, LookCase
from tools.registry import Toolbox

BOX_IOU = 0.5  # a zoom "hits" the lesion at this overlap


@dataclass(frozen=True)
class LookResult:
    id: str
    expected: str  # the correct option letter
    answered: str  # the letter read from the answer ("" when the read gave none)
    zoom_iou: float  # of the first zoom box with the lesion box; 0.0 without a zoom
    ended: str

    @property
    def correct(self) -> bool:
        return self.answered == self.expected

    @property
    def hit(self) -> bool:
        return self.zoom_iou >= BOX_IOU


@dataclass(frozen=True)
class LookSummary:
    results: tuple[LookResult, ...]

    @property
    def accuracy(self) -> float:
        return sum(r.correct for r in self.results) / max(1, len(self.results))

    @property
    def zoom_hits(self) -> float:
        return sum(r.hit for r in self.results) / max(1, len(self.results))

    def line(self) -> str:
        return (
            f"{sum(r.correct for r in self.results)}/{len(self.results)} answered correctly, "
            f"{sum(r.hit for r in self.results)}/{len(self.results)} zooms on the lesion "
            f"(IoU >= {BOX_IOU})"
        )


def reference_policy(model_dir: Path, text_file: str, **settings) -> PolicySettings:
    """The llama.cpp policy as the reference agent runs: shown images fit SHOWN pixels (the
    size it was trained at), greedy decoding."""
    from edge_agent.policies.llama_cpp import LlamaCppSettings

    llama = LlamaCppSettings(
        model=str(model_dir / text_file),
        mmproj=str(mmproj_of(model_dir)),
        image_size=SHOWN,
        **settings,
    )
    return PolicySettings(name="llama_cpp", llama_cpp=llama)


def read_cases(
    cases: Iterable[LookCase],
    config: Config,
    policy: Policy,
    toolbox: Toolbox | None = None,
) -> LookSummary:
    """Each case read by `policy` exactly as a study is read."""
    config = replace(config, report=replace(config.report, dicom=False))
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-agent-look-") as scratch:
        for case in cases:
            folder = Path(scratch) / case.id
            folder.mkdir()
            read = read_study(
                case_study(case, folder),
                folder / "read",
                config,
                question=case.question,
                policy=policy,
                toolbox=toolbox,
            )
            results.append(_scored(case, read.trajectory))
    return LookSummary(tuple(results))


def _scored(case: LookCase, trajectory) -> LookResult:
    letter = option_letter(trajectory.answer.text, OPTIONS) if trajectory.answer else ""
    zooms = [s for s in trajectory.steps if s.tool == "zoom_in" and s.image is not None]
    iou = 0.0
    if zooms:
        roi = trajectory.images[zooms[0].image].roi_px
        iou = box_iou(tuple(roi), case.lesion_box)
    return LookResult(case.id, case.letter, letter, round(iou, 3), trajectory.end_reason)
