"""report.html: one self-contained page (images embedded) a radiologist can open offline."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from edge_agent.report.content import claim_measurements
from edge_agent.trajectory import ImageRecord, StepRecord, Trajectory

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1b1b}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.8rem 1rem;border-radius:6px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}
img{image-rendering:pixelated;border:1px solid #999}
figure img{width:256px;height:auto}
figure.sheet img{width:512px}
.step{border-left:4px solid #4a78c2;padding:.3rem 1rem;margin:1rem 0}
.step.error{border-color:#c24a4a}
code,pre{background:#f6f6f6;padding:.1rem .3rem;white-space:pre-wrap}
.muted{color:#666}
"""


def render_html(trajectory: Trajectory, report: dict, out_dir: Path) -> str:
    images = {record.index: _data_uri(out_dir / record.file) for record in trajectory.images}
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>edge-agent report {escape(trajectory.study_instance_uid)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<p class='banner'><strong>{escape(trajectory.policy.label)}.</strong> "
        f"{escape(report['disclaimer'])}</p>",
        "<h1>edge-agent report</h1>",
        _summary(trajectory, report),
        _findings(report, images),
        _measurements(trajectory),
        _trail(trajectory, images),
        f"<p class='muted'>edge-agent {escape(str(trajectory.software.get('edge_agent', '')))}"
        f" &middot; read started {escape(trajectory.started_at)}, "
        f"{trajectory.duration_s:.1f} s</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _summary(trajectory: Trajectory, report: dict) -> str:
    answer = report["answer"] or (
        f"No answer: the read ended ({trajectory.end_reason}: {trajectory.end_detail})."
    )
    rows = [
        ("Study Instance UID", trajectory.study_instance_uid),
        ("Series Instance UID", f"{trajectory.series_instance_uid} ({trajectory.modality})"),
        ("Policy", trajectory.policy.label),
        ("Model", json.dumps(trajectory.policy.model) if trajectory.policy.model else "none"),
        *((("Prompt format", report["prompt_profile"]),) if "prompt_profile" in report else ()),
        ("Question", trajectory.question),
        ("Read ended", f"{trajectory.end_reason} {trajectory.end_detail}".strip()),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{table}</table><h2>Answer</h2><p>{escape(answer)}</p>"


def _findings(report: dict, images: dict[int, str]) -> str:
    if not report["findings"]:
        return "<h2>Findings</h2><p>No findings.</p>"
    timed = any("time_window_s" in finding for finding in report["findings"])
    rows = []
    for number, finding in enumerate(report["findings"], 1):
        evidence = " ".join(_thumbnail(e, images) for e in finding["evidence"])
        when = f"<td>{_window(finding.get('time_window_s'))}</td>" if timed else ""
        rows.append(
            f"<tr><td>{number}</td><td>{escape(finding['text'])}</td>{when}<td>{evidence}</td></tr>"
        )
    when_head = "<th>When (s from the start)</th>" if timed else ""
    return (
        f"<h2>Findings</h2><table><tr><th>#</th><th>Finding</th>{when_head}<th>Evidence (click "
        f"for the step)</th></tr>{''.join(rows)}</table>"
    )


def _window(window) -> str:
    if not window:
        return ""
    start, end = window
    return f"{start:.3f}" if start == end else f"{start:.3f} - {end:.3f}"


def _thumbnail(evidence: dict, images: dict[int, str]) -> str:
    """Links to the step that made the image, or to the shown image itself."""
    index = evidence["index"]
    target = f"#step-{evidence['step']}" if evidence["step"] is not None else f"#image-{index}"
    return (
        f"<a href='{target}' title='{escape(evidence['image'])}'><img src='{images[index]}' "
        f"alt='evidence image #{index}' style='max-width:120px'></a>"
    )


def _measurements(trajectory: Trajectory) -> str:
    claims = trajectory.answer.findings if trajectory.answer else ()
    rows = [
        f"<tr><td>{number}</td><td>{escape(m.name.value)}</td><td>{m.value:g}</td>"
        f"<td>{escape(m.unit.symbol)} <code>{escape(m.unit.value)}</code></td></tr>"
        for number, claim in enumerate(claims, 1)
        for m in claim_measurements(trajectory, claim)
    ]
    if not rows:
        return ""
    return (
        "<h2>Measurements</h2><table><tr><th>Finding</th><th>Measurement</th><th>Value</th>"
        f"<th>Unit (UCUM code)</th></tr>{''.join(rows)}</table>"
    )


def _trail(trajectory: Trajectory, images: dict[int, str]) -> str:
    shown = [r for r in trajectory.images if r.step is None]
    parts = ["<h2>Reasoning trail</h2>", "<h3>Shown images</h3>"]
    parts += [_figure(record, images) for record in shown]
    by_step = {r.step: r for r in trajectory.images if r.step is not None}
    parts += [_step(step, by_step.get(step.number), images) for step in trajectory.steps]
    if trajectory.answer:
        parts.append(
            f"<div class='step'><h3>Answer</h3><p class='muted'>"
            f"{escape(trajectory.answer.thought)}</p><p>{escape(trajectory.answer.text)}</p></div>"
        )
    return "\n".join(parts)


def _step(step: StepRecord, image: ImageRecord | None, images: dict[int, str]) -> str:
    css = "step error" if step.error else "step"
    call = escape(json.dumps(step.arguments))
    return (
        f"<div class='{css}' id='step-{step.number}'><h3>Step {step.number}: "
        f"<code>{escape(step.tool)}</code></h3>"
        f"<p class='muted'>{escape(step.thought)}</p><pre>{call}</pre>"
        f"<p>{escape(step.observation)}</p>"
        f"{_figure(image, images) if image else ''}"
        f"<p class='muted'>policy {step.policy_s:.3f} s, tool {step.tool_s:.3f} s</p></div>"
    )


def _figure(record: ImageRecord, images: dict[int, str]) -> str:
    ref = record.source
    sheet = " class='sheet'" if record.frame_files else ""
    return (
        f"<figure id='image-{record.index}'{sheet}><img src='{images[record.index]}' "
        f"alt='image #{record.index}'><figcaption>#{record.index} {escape(record.tool)} "
        f"{record.width}x{record.height}; source SOP {escape(ref.sop_instance_uid)} "
        f"{_frames(record)}</figcaption></figure>"
    )


def _frames(record: ImageRecord) -> str:
    """Which frame(s), and when; a contact sheet links each of its frames at full size."""
    if not record.times_s:
        return f"frame {record.source.frame}"
    if not record.frame_files:
        return f"frame {record.frames[0]} at {record.times_s[0]:.3f} s"
    links = ", ".join(
        f"<a href='{escape(name)}'>{time:.3f} s (frame {frame})</a>"
        for name, frame, time in zip(record.frame_files, record.frames, record.times_s, strict=True)
    )
    return f"contact sheet of {len(record.frames)} frames: {links}"
