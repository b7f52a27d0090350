"""report.json: the findings of a read, each tied to evidence images and measurements.

Contract kept by later work: study_instance_uid, policy, model, (a model read's prompt_profile,)
question, answer, findings
[{text, evidence [{image, source {sop_instance_uid, frame}, bbox_px}], measurements
[{name, value, unit}]}], disclaimer. Every finding has at least one evidence image.
Cine and video reads add, per evidence image, frames, times_s and time_window_s (a contact sheet
also frame_images), and per finding the time_window_s its evidence spans.
For a reader: per finding its key_image and where it is (series number and description, instance
number, slice position in mm, frame, time), and end.summary, how the read ended in one sentence.
After `edge-agent ask`: follow_ups [{question, answer, asked_at, findings (as above)}].
When DICOM outputs are written, a finding whose outline the SEG cannot carry says why in
outline_note (absent otherwise)."""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.report.location import how_it_ended, key_image, where
from edge_agent.trajectory import ClaimRecord, ImageRecord, Trajectory
from imaging.records import to_plain
from tools.measurement import Measurement
from tools.observation import measurements_of


def build_report(trajectory: Trajectory, outline_notes: Mapping[int, str] | None = None) -> dict:
    """Pure function of the trajectory and of the notes its source headers give (by finding
    number, from `outlines_not_in_seg`), so a replay with the source study's headers gives the
    same report byte for byte. Without them (the study gone, DICOM outputs off) a replay has no
    notes: its report lacks any outline_note the read's had."""
    answer = trajectory.answer
    notes = outline_notes or {}
    return {
        "study_instance_uid": trajectory.study_instance_uid,
        "series_instance_uid": trajectory.series_instance_uid,
        "modality": trajectory.modality,
        "series_number": trajectory.series_number,
        "series_description": trajectory.series_description,
        "selection": trajectory.selection,
        "policy": trajectory.policy.name,
        "policy_label": trajectory.policy.label,
        "model": trajectory.policy.model,
        **_prompt_profile(trajectory),
        "question": trajectory.question,
        "answer": answer.text if answer else None,
        "end": {
            "reason": trajectory.end_reason,
            "detail": trajectory.end_detail,
            "summary": how_it_ended(trajectory),
        },
        "findings": [
            _finding(trajectory, c, notes.get(number))
            for number, c in enumerate(answer.findings if answer else (), 1)
        ],
        "disclaimer": trajectory.policy.disclaimer,
        "software": trajectory.software,
        **({"follow_ups": _follow_ups(trajectory)} if trajectory.follow_ups else {}),
    }


def _follow_ups(trajectory: Trajectory) -> list[dict]:
    """Questions asked after the answer (`edge-agent ask`), each with its answer and findings."""
    return [
        {
            "question": f.question,
            "answer": f.answer,
            "asked_at": f.asked_at,
            "findings": [_finding(trajectory, c) for c in f.findings],
        }
        for f in trajectory.follow_ups
    ]


def _prompt_profile(trajectory: Trajectory) -> dict:
    """A model read names the prompt format it spoke (a provisional one says so); reads without
    one, and trajectories written before profiles, add nothing, so their reports are unchanged."""
    profile = trajectory.policy.prompt_profile
    return {"prompt_profile": profile} if profile else {}


def _finding(trajectory: Trajectory, claim: ClaimRecord, outline_note: str | None = None) -> dict:
    times = [t for i in claim.evidence for t in trajectory.image(i).times_s]
    window = {"time_window_s": [min(times), max(times)]} if times else {}
    key = key_image(trajectory, claim)
    return {
        "text": claim.text,
        **window,
        "key_image": key.file,
        "where": where(trajectory, key),
        "evidence": [_evidence(trajectory, i) for i in claim.evidence],
        "measurements": [to_plain(m) for m in claim_measurements(trajectory, claim)],
        **({"outline_note": outline_note} if outline_note else {}),
    }


def claim_measurements(trajectory: Trajectory, claim: ClaimRecord) -> tuple[Measurement, ...]:
    """What the steps that made a finding's evidence images measured, in step order: the one
    list report.json, report.html and the SR all show."""
    cited = set(claim.evidence)
    return tuple(
        measurement
        for step in trajectory.steps
        if step.image in cited and not step.error
        for measurement in measurements_of(step.payload)
    )


def _evidence(trajectory: Trajectory, index: int) -> dict:
    image = trajectory.image(index)
    return {
        "image": image.file,
        "index": image.index,
        "step": image.step,
        "source": to_plain(image.source),
        "bbox_px": list(image.roi_px),
        **_timing(image),
    }


def _timing(image: ImageRecord) -> dict:
    """When a cine / video image was shown; nothing for stills."""
    if not image.times_s:
        return {}
    timing = {
        "frames": list(image.frames),
        "times_s": list(image.times_s),
        "time_window_s": list(image.time_window_s),
    }
    if image.frame_files:
        timing["frame_images"] = list(image.frame_files)
    return timing
