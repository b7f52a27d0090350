"""Case sets: the rows an evaluation reads, from the layouts people already have.

Three layouts, told apart by their keys, in JSON (a list), JSONL or CSV:
- VQA (VQA-RAD / SLAKE / PathVQA): an image file, a question, an answer, closed or open;
- multiple choice (OmniMedVQA / MedXpertQA-MM): an image, a question, options, the correct letter;
- a site case list: a study folder (or a Study Instance UID at a PACS), a question, an expected
  answer, optionally an expected region (box in source pixels, or a SEG file) and expected
  measurements with a tolerance.
A bad row is named with its problem and left out; the other rows still run."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from imaging.errors import BadInput
from imaging.header import looks_like_uid

log = logging.getLogger(__name__)

KINDS = ("closed", "open", "choice", "detect")
LETTERS = "ABCDEFGHIJ"
IMAGE_KEYS = ("image", "image_name", "img_name", "image_path", "img_path", "images")
STUDY_KEYS = ("study", "study_folder", "path")
ANSWER_KEYS = ("answer", "expected", "expected_answer", "gt_answer")
GROUP_KEYS = ("group", "modality", "modality_type", "question_type", "content_type")
LETTER_KEYS = ("label", "answer_letter", "correct", "correct_letter")
IMAGE_FOLDERS = ("", "images", "imgs", "image", "VQA_RAD Image Folder")


class CaseFileError(BadInput):
    """The case file itself cannot be read (missing, not JSON/CSV, no rows)."""


class RowError(ValueError):
    """One row cannot become a case; the message names what is wrong."""


@dataclass(frozen=True)
class Measurement:
    """An expected measurement: `value` in `unit`, correct within `tolerance` of the same unit."""

    name: str
    value: float
    unit: str = "mm"
    tolerance: float = 0.0


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    kind: str  # one of KINDS
    answer: str = ""  # expected answer text; for "choice" the correct letter
    image: str = ""  # a plain image file (VQA layouts)
    study: str = ""  # a study folder or file
    study_uid: str = ""  # a Study Instance UID to retrieve from the configured PACS
    options: tuple[str, ...] = ()  # option texts, A first
    box: tuple[float, float, float, float] | None = None  # expected region, source pixels
    seg: str = ""  # expected region as a DICOM SEG file
    measurements: tuple[Measurement, ...] = ()
    group: str = ""  # metrics are also given per group (a modality, a question type, a size)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RowError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if sum(bool(s) for s in (self.image, self.study, self.study_uid)) != 1:
            raise RowError("give exactly one of an image, a study folder or a study_uid")


@dataclass(frozen=True)
class BadRow:
    where: str  # file:row
    problem: str


@dataclass(frozen=True)
class CaseSet:
    source: str
    cases: tuple[Case, ...]
    problems: tuple[BadRow, ...] = ()


def read_cases(path: Path) -> CaseSet:
    """Every usable row of a case file as a Case; each unusable one as a BadRow with its reason."""
    path = Path(path)
    cases, problems, seen = [], [], set()
    for number, row in _rows(path):
        where = f"{path.name}:{number}"
        try:
            case = case_from_row(row, path.parent, number)
            if case.id in seen:
                raise RowError(f"id {case.id!r} is used by an earlier row")
        except RowError as exc:
            log.warning("case %s left out: %s", where, exc)
            problems.append(BadRow(where, str(exc)))
            continue
        seen.add(case.id)
        cases.append(case)
    if not cases and not problems:
        raise CaseFileError(f"{path} holds no case rows")
    return CaseSet(str(path), tuple(cases), tuple(problems))


def _rows(path: Path) -> Iterator[tuple[int, object]]:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json"):
        raise CaseFileError(f"{path}: case files are .csv, .jsonl or .json, not {suffix!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CaseFileError(f"cannot read case file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # saved in a legacy code page, or not text at all
        raise CaseFileError(
            f"case file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    if suffix == ".csv":
        yield from enumerate(csv.DictReader(text.splitlines()), 2)  # row 1 is the header
    elif suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield number, _json_line(line)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CaseFileError(f"{path} is not JSON: {exc}") from None
        if not isinstance(data, list):
            raise CaseFileError(f"{path} must hold a JSON list of rows")
        yield from enumerate(data, 1)


def _json_line(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return RowError(f"not JSON: {exc.msg} at column {exc.colno}")


def case_from_row(row: object, base: Path, number: int) -> Case:
    """One row of any layout; paths are relative to the case file's folder."""
    if isinstance(row, RowError):
        raise row
    if not isinstance(row, Mapping):
        raise RowError(f"a row must be an object, not {type(row).__name__}")
    row = {k.strip(): v for k, v in row.items() if k and v not in (None, "")}
    question = _text(row, "question")
    if not question:
        raise RowError("no question")
    options = _options(row)
    common = {
        "id": _case_id(row, number, question),
        "question": question,
        "group": next((_text(row, k) for k in GROUP_KEYS if _text(row, k)), ""),
        **_source(row, base),
    }
    if options:
        return Case(kind="choice", options=options, answer=_letter(row, options), **common)
    answer = next((_text(row, k) for k in ANSWER_KEYS if _text(row, k)), "")
    box, seg, measurements = _box(row), _seg(row, base), _measurements(row)
    if not answer and box is None and not seg and not measurements:
        raise RowError("no expected answer, region or measurement to score against")
    kind = _kind(row, answer)
    return Case(kind=kind, answer=answer, box=box, seg=seg, measurements=measurements, **common)


def _text(row: Mapping, key: str) -> str:
    value = row.get(key)
    return str(value).strip() if isinstance(value, (str, int, float)) else ""


def _case_id(row: Mapping, number: int, question: str) -> str:
    """Stable across runs (resume depends on it) and safe as a folder name."""
    given = _text(row, "id") or _text(row, "qid") or _text(row, "case_id")
    if given:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", given) or given.startswith("."):
            raise RowError(f"id {given!r} must be 1-64 letters, digits, '_', '.', '-'")
        return given
    digest = hashlib.sha256(f"{number}\0{question}".encode()).hexdigest()[:8]
    return f"row{number:05d}-{digest}"


def _source(row: Mapping, base: Path) -> dict:
    uid = _text(row, "study_uid") or _text(row, "study_instance_uid")
    if uid:
        if not looks_like_uid(uid):
            raise RowError(f"study_uid {uid!r} is not a DICOM UID (digits and dots, <= 64)")
        return {"study_uid": uid}
    for key in STUDY_KEYS:
        if _text(row, key):
            return {"study": str(_existing(base, _text(row, key), ("",)))}
    for key in IMAGE_KEYS:
        value = row.get(key)
        if isinstance(value, list) and value:  # MedXpertQA lists its images; the first is read
            value = value[0]
        if isinstance(value, str) and value.strip():
            return {"image": str(_existing(base, value.strip(), IMAGE_FOLDERS))}
    raise RowError(f"no image ({', '.join(IMAGE_KEYS)}), study or study_uid")


def _existing(base: Path, name: str, folders: tuple[str, ...]) -> Path:
    for folder in folders:
        candidate = base / folder / name
        if candidate.exists():
            return candidate
    raise RowError(f"{name!r} does not exist under {base}")


def _options(row: Mapping) -> tuple[str, ...]:
    options = row.get("options")
    if isinstance(options, Mapping):
        letters = sorted(k for k in options if k in LETTERS)
        if letters != list(LETTERS[: len(letters)]):
            raise RowError(f"options are lettered {letters}, not A, B, C, ...")
        return tuple(str(options[k]) for k in letters)
    if isinstance(options, list):
        return tuple(str(o) for o in options)
    if isinstance(options, str) and options.strip().startswith(("[", "{")):
        try:
            return _options({"options": json.loads(options)})
        except json.JSONDecodeError as exc:
            raise RowError(f"options are not JSON: {exc.msg}") from None
    return tuple(_text(row, f"option_{k}") for k in LETTERS if _text(row, f"option_{k}"))


def _letter(row: Mapping, options: tuple[str, ...]) -> str:
    """The correct letter: given, or found from the answer text among the options."""
    letter = next((_text(row, k).upper() for k in LETTER_KEYS if _text(row, k)), "")
    if not letter:
        answer = next((_text(row, k) for k in ANSWER_KEYS if _text(row, k)), "")
        matches = [LETTERS[i] for i, o in enumerate(options) if o.strip() == answer]
        letter = matches[0] if len(matches) == 1 else answer.upper()
    if letter not in LETTERS[: len(options)] or len(letter) != 1:
        raise RowError(f"correct option {letter!r} is not one of A-{LETTERS[len(options) - 1]}")
    return letter


def _kind(row: Mapping, answer: str) -> str:
    given = (_text(row, "answer_type") or _text(row, "kind") or _text(row, "type")).lower()
    if given in KINDS:
        return given
    if not answer:  # a region and/or measurements: scored by the findings that show them
        return "detect"
    return "closed" if answer.lower() in ("yes", "no") else "open"


def _box(row: Mapping) -> tuple[float, float, float, float] | None:
    value = row.get("box") or row.get("bbox")
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in re.split(r"[\s,;\[\]]+", value) if v]
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise RowError(f"box {value!r} is not four numbers x1 y1 x2 y2") from None
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise RowError(f"box {list(box)} is not x1 y1 x2 y2 with x2 > x1 and y2 > y1")
    return box  # type: ignore[return-value]


def _seg(row: Mapping, base: Path) -> str:
    name = _text(row, "seg")
    return str(_existing(base, name, ("",))) if name else ""


def _measurements(row: Mapping) -> tuple[Measurement, ...]:
    """JSON rows: a list of {name, value, unit, tolerance}; CSV rows: measurement, value, unit,
    tolerance columns for one measurement."""
    listed = row.get("measurements")
    if isinstance(listed, str):
        try:
            listed = json.loads(listed)
        except json.JSONDecodeError as exc:
            raise RowError(f"measurements are not JSON: {exc.msg}") from None
    if listed is None and _text(row, "measurement"):
        listed = [
            {
                "name": row["measurement"],
                "value": row.get("value"),
                "unit": row.get("unit", "mm"),
                "tolerance": row.get("tolerance", 0),
            }
        ]
    if listed is None:
        return ()
    if not isinstance(listed, list):
        raise RowError("measurements must be a list of {name, value, unit, tolerance}")
    return tuple(_measurement(item) for item in listed)


def _measurement(item: object) -> Measurement:
    if not isinstance(item, Mapping) or not item.get("name"):
        raise RowError(f"measurement {item!r} needs a name and a value")
    try:
        value, tolerance = float(item.get("value")), float(item.get("tolerance", 0))
    except (TypeError, ValueError):
        raise RowError(
            f"measurement {item['name']!r}: value and tolerance must be numbers"
        ) from None
    if tolerance < 0:
        raise RowError(f"measurement {item['name']!r}: tolerance {tolerance} is negative")
    return Measurement(str(item["name"]), value, str(item.get("unit", "mm")), tolerance)
