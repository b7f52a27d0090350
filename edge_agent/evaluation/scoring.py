"""Scoring one read against its case, from report.json and trajectory.json as a read wrote them.

Pure functions over those files' contents, so a kept read can be scored again later."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge_agent.evaluation.cases import LETTERS, Case, Measurement

DETECT_IOU = 0.1  # a finding "shows" the expected region when its box overlaps it this much
ARTICLES = {"a", "an", "the"}


@dataclass(frozen=True)
class MeasurementScore:
    name: str
    unit: str
    expected: float
    tolerance: float
    measured: float | None  # None: no finding carried this measurement
    error: float | None  # measured - expected

    @property
    def within(self) -> bool:
        return self.error is not None and abs(self.error) <= self.tolerance


@dataclass(frozen=True)
class Score:
    predicted: str  # the short answer read from the reply (yes/no, a letter, the text)
    correct: bool | None  # closed, choice, open (exact match); None for detect cases
    token_recall: float | None  # open answers only
    calls: int  # tool calls made, an unparseable reply counted as one
    valid_calls: int  # calls that parsed, validated and ran
    iou: float | None  # best IoU of a finding's evidence box with the expected region
    detected: bool | None
    measurements: tuple[MeasurementScore, ...]
    latency_s: float
    tokens_in: int
    tokens_out: int
    ended: str = ""  # the read's end reason: "answer", "max_turns", "time_limit", "policy_error"


def score(case: Case, report: Mapping, trajectory: Mapping, expected_box=None) -> Score:
    """`expected_box`: the case's region in source pixels (from its box or SEG)."""
    answer = answer_text(str(report.get("answer") or ""))
    predicted, correct, recall = _answer_score(case, answer)
    calls, valid = tool_calls(trajectory)
    boxes = finding_boxes(report)
    ious = [iou(box, expected_box) for box in boxes] if expected_box else []
    best = max(range(len(ious)), key=ious.__getitem__) if ious else None
    shown = best if best is not None and ious[best] >= DETECT_IOU else None
    tokens_in, tokens_out = _tokens(trajectory)
    return Score(
        predicted=predicted,
        correct=correct,
        token_recall=recall,
        calls=calls,
        valid_calls=valid,
        iou=round(ious[best], 4) if best is not None else (0.0 if expected_box else None),
        detected=(ious[best] >= DETECT_IOU if best is not None else False)
        if expected_box
        else None,
        measurements=tuple(
            _measurement(m, report.get("findings", []), shown, bool(expected_box))
            for m in case.measurements
        ),
        latency_s=float(trajectory.get("duration_s", 0.0)),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        ended=str(trajectory.get("end_reason", "")),
    )


def answer_text(text: str) -> str:
    """The answer inside <answer>…</answer> when a model wrote the tags, else the whole text."""
    found = re.search(r"<answer>(.*?)(?:</answer>|$)", text, re.S)
    return (found.group(1) if found else text).strip()


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD-style normal form)."""
    text = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(word for word in text.split() if word not in ARTICLES)


def _answer_score(case: Case, answer: str) -> tuple[str, bool | None, float | None]:
    if case.kind == "closed":
        return _closed(normalise(case.answer), answer)
    if case.kind == "choice":
        predicted = option_letter(answer, case.options)
        return predicted, predicted == case.answer, None
    if case.kind == "open":
        words = normalise(case.answer).split()
        said = set(normalise(answer).split())
        recall = sum(w in said for w in words) / len(words) if words else 0.0
        return answer, normalise(answer) == normalise(case.answer), round(recall, 4)
    return answer, None, None


def _closed(expected: str, answer: str) -> tuple[str, bool, None]:
    """A yes/no question by the first yes or no the reply says; another closed question ("CT or
    MRI?", "which side?") by whether the reply names the expected answer, word for word."""
    said = normalise(answer)
    if expected in ("yes", "no"):
        found = re.search(r"\b(yes|no)\b", said)
        predicted = found.group(1) if found else ""
        return predicted, predicted == expected, None
    return answer, bool(expected) and f" {expected} " in f" {said} ", None


def option_letter(answer: str, options: Sequence[str]) -> str:
    """The option a reply chose: a leading letter ("B", "(B) …", "B."), "answer is B", or the one
    option whose text the reply contains; "" when it chose none or several."""
    letters = LETTERS[: len(options)]
    for pattern in (r"^\(?([A-J])\)?(?:[.):\s]|$)", r"\banswer\s*(?:is|:)?\s*\(?([A-J])\b"):
        found = re.search(pattern, answer.strip(), re.I if pattern.startswith(r"\b") else 0)
        if found and found.group(1).upper() in letters:
            return found.group(1).upper()
    said = normalise(answer)
    named = [letters[i] for i, o in enumerate(options) if normalise(o) and normalise(o) in said]
    return named[0] if len(named) == 1 else ""


def tool_calls(trajectory: Mapping) -> tuple[int, int]:
    """(calls, valid calls). A call the registry rejected or whose tool raised is recorded as an
    error observation; a reply that did not parse ends the read as policy_error: both are wrong."""
    steps = trajectory.get("steps", [])
    calls = len(steps) + (trajectory.get("end_reason") == "policy_error")
    return calls, sum(not step.get("error") for step in steps)


def finding_boxes(report: Mapping) -> list[tuple[float, ...]]:
    """Each finding's place in source pixels: the box of its newest cited image (the outline or
    measurement it rests on)."""
    boxes = []
    for finding in report.get("findings", []):
        evidence = finding.get("evidence") or []
        boxes.append(tuple(evidence[-1]["bbox_px"]) if evidence else (0.0, 0.0, 0.0, 0.0))
    return boxes


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _measurement(
    expected: Measurement, findings: list, shown: int | None, regional: bool
) -> MeasurementScore:
    """From the finding that shows the expected region (none shows it: not measured); without a
    region, from the first finding that carries a measurement of that name and unit."""
    candidates = findings if not regional else [findings[shown]] if shown is not None else []
    measured = next(
        (
            float(m["value"])
            for f in candidates
            for m in f.get("measurements", [])
            if m["name"].lower() == expected.name.lower() and m["unit"] == expected.unit
        ),
        None,
    )
    error = None if measured is None else round(measured - expected.value, 4)
    return MeasurementScore(
        expected.name, expected.unit, expected.value, expected.tolerance, measured, error
    )


def _tokens(trajectory: Mapping) -> tuple[int, int]:
    usages = [step.get("usage") or {} for step in trajectory.get("steps", [])]
    answer = trajectory.get("answer") or {}
    usages.append(answer.get("usage") or {})
    return (
        sum(int(u.get("prompt_tokens", 0)) for u in usages),
        sum(int(u.get("generated", 0)) for u in usages),
    )
