"""Routing rules: which received studies are read (and with what question and policy), which are
only stored, and why a study was not read.

Rules are tried in order; the first whose every condition holds for at least one instance of the
study decides. Without rules every study is read, as before; with rules, a study no rule matches
is stored, not read, and the audit says what it was (senders, modalities, SOP classes, body
parts: never free text, which may hold patient details)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pydicom

from dicom_gateway.reader import DEFAULT_REQUEST, ReadRequest

ACTIONS = ("read", "store")
# The spool records a DIMSE caller by its AE title and a STOW-RS client as stow\NAME: a
# backslash, which no AE title may hold (PS3.5, VR AE), so no DIMSE caller passes for a client.
STOW_SENDER = "stow\\"
HEADER_TAGS = ("Modality", "SOPClassUID", "BodyPartExamined", "SeriesDescription")


@dataclass(frozen=True)
class Rule:
    """One `[[gateway.routing.rule]]`; an empty condition matches anything."""

    name: str
    action: str = "read"  # "read", or "store" (kept in the spool, never read)
    calling_ae: tuple[str, ...] = ()  # DIMSE senders (calling AE titles)
    stow_client: tuple[str, ...] = ()  # STOW-RS senders ([[gateway.web.clients]] names)
    modality: tuple[str, ...] = ()  # e.g. ["CT"]
    sop_class: tuple[str, ...] = ()  # SOP Class UIDs
    body_part: tuple[str, ...] = ()  # Body Part Examined, e.g. ["CHEST"]
    series_description: str = ""  # a regular expression, searched case-insensitively
    question: str = ""  # the question for studies this rule reads ("" : the reader's default)
    policy: str = ""  # the policy that reads them ("" : [policy] name)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a routing rule needs a name")
        if self.action not in ACTIONS:
            raise ValueError(f"rule {self.name}: action must be 'read' or 'store'")
        if self.action == "store" and (self.question or self.policy):
            raise ValueError(f"rule {self.name}: a store-only rule takes no question or policy")
        try:
            re.compile(self.series_description)
        except re.error as exc:
            raise ValueError(f"rule {self.name}: series_description: {exc}") from None

    def matches(self, instance: InstanceFacts) -> bool:
        senders = set(self.calling_ae) | {STOW_SENDER + name for name in self.stow_client}
        return (
            (not senders or instance.sender in senders)
            and _among(instance.modality, self.modality)
            and _among(instance.sop_class, self.sop_class)
            and _among(instance.body_part, self.body_part)
            and (
                not self.series_description
                or re.search(self.series_description, instance.series_description, re.I) is not None
            )
        )


def _among(value: str, allowed: tuple[str, ...]) -> bool:
    return not allowed or value.upper() in {a.upper() for a in allowed}


@dataclass(frozen=True)
class Routing:
    """The `[gateway.routing]` table: `[[gateway.routing.rule]]` entries, in order."""

    rule: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        names = [r.name for r in self.rule]
        if len(set(names)) != len(names):
            raise ValueError(f"routing rule names must be unique: {names}")

    @property
    def policies(self) -> tuple[str, ...]:
        """Every policy a rule names: the reader opens each once, at start."""
        return tuple(dict.fromkeys(r.policy for r in self.rule if r.policy))


@dataclass(frozen=True)
class InstanceFacts:
    sender: str  # calling AE title, or STOW_SENDER + client name
    modality: str
    sop_class: str
    body_part: str
    series_description: str


@dataclass(frozen=True)
class Decision:
    read: bool
    rule: str  # the rule that decided ("" : no rules, or none matched)
    reason: str  # for the audit trail
    request: ReadRequest = DEFAULT_REQUEST


def instance_facts(path: Path, sender: str) -> InstanceFacts:
    """What routing looks at in one stored instance: its header, never its pixels."""
    header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
    return InstanceFacts(
        sender=sender,
        modality=str(header.get("Modality", "")),
        sop_class=str(header.get("SOPClassUID", "")),
        body_part=str(header.get("BodyPartExamined", "")),
        series_description=str(header.get("SeriesDescription", "")),
    )


def decide(routing: Routing, instances: list[InstanceFacts]) -> Decision:
    """The first rule that matches an instance of the study decides what happens to it."""
    if not routing.rule:
        return Decision(read=True, rule="", reason="no routing rules: every study is read")
    for rule in routing.rule:
        if any(rule.matches(instance) for instance in instances):
            if rule.action == "store":
                return Decision(False, rule.name, f"rule {rule.name}: store only")
            request = ReadRequest(question=rule.question, policy=rule.policy, rule=rule.name)
            return Decision(True, rule.name, f"rule {rule.name}: read", request)
    return Decision(read=False, rule="", reason=f"no routing rule matched {_summary(instances)}")


def _summary(instances: list[InstanceFacts]) -> str:
    def listed(values) -> str:
        return ",".join(sorted({v for v in values if v})) or "-"

    return (
        f"(senders {listed(i.sender for i in instances)}; "
        f"modalities {listed(i.modality for i in instances)}; "
        f"SOP classes {listed(i.sop_class for i in instances)}; "
        f"body parts {listed(i.body_part for i in instances)})"
    )


def route(routing: Routing, index, study_uid: str) -> Decision:
    """The decision for a stored study; without rules no file is opened."""
    return decide(routing, study_instances(index, study_uid) if routing.rule else [])


def study_instances(index, study_uid: str) -> list[InstanceFacts]:
    """The facts of every stored instance of a study, with who sent it."""
    rows = index.read("SELECT path, calling_ae FROM instances WHERE study_uid = ?", study_uid)
    return [instance_facts(Path(row["path"]), row["calling_ae"]) for row in rows]
