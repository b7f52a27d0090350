"""The patient and study values every object we write copies from its source: as the source has
them, even where a value is not what its VR allows.

highdicom builds each object from its source's Patient and General Study modules and refuses a
value it cannot take: a birth date "03.02.1951" or "19510231", a sex "Male", a name of two
values, a missing Patient ID (all found in studies PACS hold). Such values are given to it
empty (the attributes are Type 2), and each object then gets the source's own elements back, so
that it names the patient exactly as the study it joins does (a PACS matches them); an attribute
the source lacks stays empty. Which ones are logged by keyword only: the values are the
patient's."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, TM


def _single(value) -> bool:
    return not isinstance(value, MultiValue)


def _converts(kind) -> Callable[[object], bool]:
    def check(value) -> bool:
        try:
            kind(value)
        except (TypeError, ValueError):
            return False
        return True

    return check


# What highdicom copies from a source, and whether it takes a (non-empty) value.
COPIED: dict[str, Callable[[object], bool]] = {
    "PatientID": _single,
    "PatientName": _single,
    "PatientBirthDate": _converts(DA),
    "PatientSex": frozenset({"M", "F", "O"}).__contains__,
    "AccessionNumber": _single,
    "StudyID": _single,
    "StudyDate": _converts(DA),
    "StudyTime": _converts(TM),
    "ReferringPhysicianName": _single,
}


OPTIONAL = {"ReferringPhysicianName"}  # highdicom reads it with a default


def refused(source: Dataset) -> tuple[str, ...]:
    """The copied attributes highdicom would refuse in `source`: missing, or not of their VR."""
    found = []
    for keyword, takes in COPIED.items():
        value = source.get(keyword)
        if value is None and keyword in OPTIONAL:
            continue
        if value is None or (value != "" and not takes(value)):
            found.append(keyword)
    return tuple(found)


def buildable(sources: Mapping[str, Dataset]) -> tuple[dict[str, Dataset], tuple[str, ...]]:
    """`sources` as highdicom can build from them (a copy of each source with a value it would
    refuse, that value empty), and the keywords emptied in any."""
    built, emptied = {}, {}
    for uid, source in sources.items():
        keywords = refused(source)
        if keywords:
            source = copy.deepcopy(source)  # a header without pixel data: small
            for keyword in keywords:
                setattr(source, keyword, "")
            emptied.update(dict.fromkeys(keywords))
        built[uid] = source
    return built, tuple(emptied)


def as_source(made: Dataset, source: Dataset, keywords: tuple[str, ...]) -> None:
    """Give `made` the source's own elements for `keywords`: empty where the source has none
    (an object built from another source keeps no value of its own)."""
    for keyword in keywords:
        if keyword in source:
            made[keyword] = copy.deepcopy(source[keyword])
        else:
            setattr(made, keyword, None)
