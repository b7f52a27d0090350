"""Follow-up questions about a finished read (`edge-agent ask RESULT_DIR "question"`).

The protocol answers what its measurements can: which measured candidates are larger or smaller
than a length or an area, and how many it measured; anything else it says plainly it cannot
answer. Each question and answer is appended to the trajectory, and every report is written
again from it (report.json, report.html, and a new SR instance when the source study is at hand).
A model read's follow-up continues its session (edge_agent.model_followup); one process at a time
asks about a result (`asking`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from edge_agent.report.content import claim_measurements
from edge_agent.report.location import key_image
from edge_agent.trajectory import ClaimRecord, FollowUpRecord, Trajectory
from imaging.errors import BadInput
from tools.measurement import Unit

IN_MM = (Unit.MILLIMETRE, Unit.SQUARE_MILLIMETRE)  # what a size in mm is compared with

_MORE = r"larger|bigger|greater|longer|wider|more|over|above|exceed(?:s|ing)?"
_LESS = r"smaller|shorter|less|under|below"
_COMPARISON = re.compile(
    rf"\b(?P<way>{_MORE}|{_LESS})\b(?:\s+than)?\s*(?P<value>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>mm2|mm²|mm\^2|cm2|cm²|cm\^2|mm|cm)\b",
    re.IGNORECASE,
)
CANNOT = (
    "The protocol cannot answer this follow-up: it has no model, and answers only about the "
    'candidates it measured, by size ("which candidates are larger than 20 mm?", "smaller than '
    '300 mm2?") or count ("how many candidates?").'
)


@dataclass(frozen=True)
class Comparison:
    """ "larger than 2 cm" as: long axis > 20 mm."""

    larger: bool
    value: float  # mm, or mm2 for an area
    area: bool

    @property
    def measurement(self) -> str:
        return "area" if self.area else "long axis"

    @property
    def unit(self) -> str:
        return "mm²" if self.area else "mm"

    def holds(self, measured: float) -> bool:
        return measured > self.value if self.larger else measured < self.value

    def describe(self) -> str:
        way = "larger" if self.larger else "smaller"
        return f"{self.measurement} {way} than {self.value:g} {self.unit}"


def parse_comparison(question: str) -> Comparison | None:
    found = _COMPARISON.search(question)
    if found is None:
        return None
    unit = found["unit"].lower()
    area = unit[2:] in ("2", "²", "^2")
    scale = (100.0 if area else 10.0) if unit.startswith("cm") else 1.0
    larger = re.fullmatch(_MORE, found["way"].lower()) is not None
    return Comparison(larger, float(found["value"]) * scale, area)


def protocol_follow_up(trajectory: Trajectory, question: str) -> FollowUpRecord:
    """The protocol's answer to a follow-up: from the read's measurements only."""
    claims = trajectory.answer.findings if trajectory.answer else ()
    asked_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    comparison = parse_comparison(question)
    if comparison is not None:
        return _compared(trajectory, claims, question, comparison, asked_at)
    if re.search(r"\bhow many\b|\bnumber of\b|\bcount\b", question, re.IGNORECASE):
        timed = any(trajectory.image(i).times_s for claim in claims for i in claim.evidence)
        text = (  # a video's findings are moments of change: nothing in them was measured
            f"The protocol marked {len(claims)} moment(s) of change in this video."
            if timed
            else f"The protocol measured {len(claims)} candidate region(s) in this read."
        )
        return FollowUpRecord(
            question, f"Protocol demonstration (no AI model). {text}", (), asked_at
        )
    return FollowUpRecord(question, f"Protocol demonstration (no AI model). {CANNOT}", (), asked_at)


def _compared(trajectory, claims, question, comparison: Comparison, asked_at) -> FollowUpRecord:
    """Only sizes in mm (or mm²) are compared with a size in mm: a finding of an image without
    pixel spacing is measured in pixels, listed in its own unit and left out."""
    values, in_pixels = [], []
    for number, claim in enumerate(claims, 1):
        found = [
            m
            for m in claim_measurements(trajectory, claim)
            if m.name.value == comparison.measurement
        ]
        if found and found[0].unit in IN_MM:
            values.append((number, claim, found[0].value))
        elif found:
            in_pixels.append(f"finding {number}: {found[0].value:g} {found[0].unit.symbol}")
    matching = [(n, c, v) for n, c, v in values if comparison.holds(v)]
    listed = "; ".join(f"finding {n}: {v:g} {comparison.unit}" for n, _, v in values)
    if not values:
        text = f"No finding of this read has a {comparison.measurement} measured in mm."
    else:
        text = (
            f"{len(matching)} of the {len(values)} measured finding(s) have "
            f"{'an' if comparison.area else 'a'} {comparison.describe()}"
            + (f": finding(s) {', '.join(str(n) for n, _, _ in matching)}" if matching else "")
            + f". Measured: {listed}."
        )
    if in_pixels:
        text += (
            f" Not compared, measured in pixels (the image has no pixel spacing): "
            f"{'; '.join(in_pixels)}."
        )
    findings = tuple(
        ClaimRecord(
            f"Finding {n}: {comparison.measurement} {v:g} {comparison.unit} "
            f"({comparison.describe()}).",
            (key_image(trajectory, claim).index,),
        )
        for n, claim, v in matching
    )
    return FollowUpRecord(
        question, f"Protocol demonstration (no AI model). {text}", findings, asked_at
    )


@contextlib.contextmanager
def asking(result: Path) -> Iterator[None]:
    """RESULT held for this process's follow-ups (`ask`, `read --interactive`): each appends to
    the trajectory and session another one read, so a second process asking at the same time
    would drop one of the answers; it is refused at once instead. The lock is the folder's own
    (flock on it), released when the process ends however it ends."""
    try:
        folder = os.open(result, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise BadInput(f"{result} is not a read's result folder: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(
                f"another ask is running on {result}: ask again when it has answered"
            ) from None
        yield
    finally:
        os.close(folder)  # and the lock with it


def ask(result_dir: Path, question: str) -> Trajectory:
    """Answer `question` about the read in `result_dir`; returns the trajectory with it
    appended (the caller writes the reports again)."""
    if not question.strip():
        raise BadInput("ask needs a question")
    trajectory = Trajectory.load(Path(result_dir) / "trajectory.json")
    if trajectory.policy.name != "protocol":
        raise BadInput(
            f"follow-up questions about a {trajectory.policy.label} read continue its model "
            "session (the read's KV cache): the protocol's answers are for protocol reads"
        )
    follow_up = protocol_follow_up(trajectory, question)
    return replace(trajectory, follow_ups=(*trajectory.follow_ups, follow_up))
