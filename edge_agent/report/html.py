"""report.html: one self-contained page (images embedded) a radiologist can open offline.

Written for a reader first: the answer, then each finding with where it is (series, instance,
slice position, frame and time) and its key image large, with the outline, a scale bar and the
measurements drawn on it; the reasoning trail follows, folded away."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from edge_agent.report.content import claim_measurements
from edge_agent.report.location import describe, how_it_ended, where
from edge_agent.trajectory import ClaimRecord, ImageRecord, StepRecord, Trajectory

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1100px;padding:0 1rem;
color:#1b1b1b;line-height:1.4}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.8rem 1rem;border-radius:6px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}
img{image-rendering:pixelated;border:1px solid #999;max-width:100%;height:auto}
.answer{font-size:1.1rem}
.finding{border:1px solid #bbb;border-radius:6px;padding:.5rem 1rem;margin:1rem 0;
break-inside:avoid}
.finding .body{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.finding .facts{flex:1 1 300px;min-width:0}
.where{font-weight:600}
.key{position:relative;display:block;width:512px;max-width:100%;flex:0 0 auto}
.key img{display:block;width:100%}
.key svg{position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none}
.thumbs img{width:96px;margin:2px}
figure img{width:256px}
figure.sheet img{width:512px}
.step{border-left:4px solid #4a78c2;padding:.3rem 1rem;margin:1rem 0}
.step.error{border-color:#c24a4a}
summary{cursor:pointer;font-size:1.3rem;font-weight:600;margin:1rem 0}
code,pre{background:#f6f6f6;padding:.1rem .3rem;white-space:pre-wrap;word-break:break-all}
.muted{color:#666}
.note{font-style:italic}
@media print{body{max-width:none;margin:0}.key{width:420px}}
"""


def render_html(trajectory: Trajectory, report: dict, out_dir: Path) -> str:
    images = {record.index: _data_uri(out_dir / record.file) for record in trajectory.images}
    claims = trajectory.answer.findings if trajectory.answer else ()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>edge-agent report: {escape(_series(trajectory))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<p class='banner'><strong>{escape(trajectory.policy.label)}.</strong> "
        f"{escape(report['disclaimer'])}</p>",
        f"<h1>Report: {escape(_series(trajectory))}</h1>",
        _summary(trajectory, report),
        _findings(trajectory, report, claims, images),
        _follow_ups(report, images),
        _trail(trajectory, images),
        _identifiers(trajectory),
        f"<p class='muted'>edge-agent {escape(str(trajectory.software.get('edge_agent', '')))}"
        f" &middot; read started {escape(trajectory.started_at)}, "
        f"{trajectory.duration_s:.1f} s</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _series(trajectory: Trajectory) -> str:
    number = f" series {trajectory.series_number}" if trajectory.series_number is not None else ""
    described = f" ({trajectory.series_description})" if trajectory.series_description else ""
    return f"{trajectory.modality}{number}{described}"


def _summary(trajectory: Trajectory, report: dict) -> str:
    answer = report["answer"] or f"No answer. {how_it_ended(trajectory)}"
    rows = [
        ("Question", trajectory.question),
        ("How the read ended", how_it_ended(trajectory)),
        ("Series read", trajectory.selection),
        ("Read by", trajectory.policy.label),
        *((("Prompt format", report["prompt_profile"]),) if "prompt_profile" in report else ()),
        ("Model", json.dumps(trajectory.policy.model) if trajectory.policy.model else "none"),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<h2>Answer</h2><p class='answer'>{escape(answer)}</p><table>{table}</table>"


def _findings(trajectory: Trajectory, report: dict, claims, images: dict[int, str]) -> str:
    if not report["findings"]:
        return "<h2>Findings</h2><p>No findings.</p>"
    sections = [
        _finding(number, trajectory, finding, claim, images)
        for number, (finding, claim) in enumerate(zip(report["findings"], claims, strict=True), 1)
    ]
    return "<h2>Findings</h2>" + "".join(sections)


def _finding(number: int, trajectory: Trajectory, finding: dict, claim: ClaimRecord, images) -> str:
    key = trajectory.image(claim.evidence[-1])
    measured = claim_measurements(trajectory, claim)
    rows = "".join(
        f"<tr><td>{escape(m.name.value)}</td><td>{m.value:g}</td>"
        f"<td>{escape(m.unit.symbol)} <code>{escape(m.unit.value)}</code></td></tr>"
        for m in measured
    )
    table = (
        f"<table><tr><th>Measurement</th><th>Value</th><th>Unit (UCUM code)</th></tr>{rows}</table>"
        if rows
        else ""
    )
    when = finding.get("time_window_s")
    thumbs = " ".join(_thumbnail(e, images) for e in finding["evidence"])
    label = "; ".join(f"{m.name.value} {m.value:g} {m.unit.symbol}" for m in measured[:2])
    return (
        f"<section class='finding' id='finding-{number}'><h3>Finding {number} "
        f"<span class='muted'>{AI_LABEL}</span></h3>"  # on every page a finding is printed on
        f"<p class='text'>{escape(finding['text'])}</p>"
        f"<div class='body'>{_key_image(key, images, label)}<div class='facts'>"
        f"<p class='where'>{escape(describe(finding['where']))}</p>"
        + (f"<p class='shown'>Shown at {escape(_level(key.window))}</p>" if key.window else "")
        + (f"<p>When (s from the start): {_window(when)}</p>" if when else "")
        + (f"<p class='note'>{escape(note)}</p>" if (note := finding.get("outline_note")) else "")
        + f"{table}<p class='muted'>All evidence (click for the step that made it):</p>"
        f"<p class='thumbs'>{thumbs}</p></div></div></section>"
    )


AI_LABEL = "(AI-generated, not a diagnosis)"


def _level(window: dict) -> str:
    """The window a key image is shown at, as a reading station names it."""
    return f"W/L {window['width']:g}/{window['center']:g} ({window['name']})"


def _follow_ups(report: dict, images: dict[int, str]) -> str:
    """Questions asked after the answer, in the order asked, each with its evidence."""
    if not report.get("follow_ups"):
        return ""
    parts = ["<h2>Follow-up questions</h2>"]
    for number, follow_up in enumerate(report["follow_ups"], 1):
        cited = "".join(
            f"<li>{escape(f['text'])} <span class='muted'>{escape(describe(f['where']))}</span>"
            f"<br>{' '.join(_thumbnail(e, images) for e in f['evidence'])}</li>"
            for f in follow_up["findings"]
        )
        parts.append(
            f"<section class='finding' id='follow-up-{number}'><h3>Q{number}: "
            f"{escape(follow_up['question'])}</h3><p>{escape(follow_up['answer'])}</p>"
            + (f"<ul class='thumbs'>{cited}</ul>" if cited else "")
            + f"<p class='muted'>asked {escape(follow_up['asked_at'])}</p></section>"
        )
    return "".join(parts)


def _key_image(record: ImageRecord, images: dict[int, str], label: str) -> str:
    """The key image large, linked to its PNG at full size, with the measurements and a scale bar
    drawn over it on dark strips (an SVG on top, so the evidence PNG stays what the tool made)."""
    w, h = record.width, record.height
    size = max(11.0, w / 30)
    marks = []
    if label:
        marks.append(
            f"<rect x='0' y='0' width='{w}' height='{size * 1.6:.1f}' fill='#000' opacity='.65'/>"
            f"<text x='{size * 0.4:.1f}' y='{size * 1.15:.1f}' font-size='{size:.1f}' "
            f"fill='#ffec3d'>{escape(label)}</text>"
        )
    bar = _scale_bar(record)
    if bar:
        length_px, mm = bar
        x, y = size * 0.6, h - size * 0.7
        marks.append(
            f"<rect x='0' y='{h - size * 2.6:.1f}' width='{length_px + size * 1.2:.1f}' "
            f"height='{size * 2.6:.1f}' fill='#000' opacity='.65'/>"
            f"<line x1='{x:.1f}' y1='{y:.1f}' x2='{x + length_px:.1f}' y2='{y:.1f}' "
            f"stroke='#fff' stroke-width='{size / 4:.1f}'/>"
            f"<text x='{x:.1f}' y='{y - size * 0.5:.1f}' font-size='{size:.1f}' fill='#fff'>"
            f"{mm:g} mm</text>"
        )
    if any(record.edges):  # R / L, A / P markers at the edges, as on a viewing station
        left, right, top, bottom = record.edges
        style = f"font-size='{size * 1.2:.1f}' font-weight='bold' fill='#fff' stroke='#000' "
        style += "stroke-width='0.8' paint-order='stroke'"
        marks.append(
            f"<text x='{size * 0.3:.1f}' y='{h / 2:.1f}' {style}>{left}</text>"
            f"<text x='{w - size * 1.2:.1f}' y='{h / 2:.1f}' {style}>{right}</text>"
            f"<text x='{w / 2:.1f}' y='{size * 3:.1f}' {style}>{top}</text>"
            f"<text x='{w / 2:.1f}' y='{h - size * 0.6:.1f}' {style}>{bottom}</text>"
        )
    svg = f"<svg viewBox='0 0 {w} {h}' aria-hidden='true'>{''.join(marks)}</svg>"
    return (
        f"<a class='key' href='{escape(record.file)}' title='open full size'>"
        f"<img src='{images[record.index]}' alt='key image #{record.index}'>{svg}</a>"
    )


def _scale_bar(record: ImageRecord) -> tuple[float, float] | None:
    """A round length (mm) about a fifth of the image wide, and its length in image pixels."""
    if not record.mm_per_px:
        return None
    wanted = record.width * record.mm_per_px / 5
    mm = next((v for v in (1, 2, 5, 10, 20, 50, 100, 200) if v >= wanted), 500)
    return mm / record.mm_per_px, mm


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
        f"alt='evidence image #{index}'></a>"
    )


def _trail(trajectory: Trajectory, images: dict[int, str]) -> str:
    """Every step, folded away: what the reader needs is above it."""
    shown = [r for r in trajectory.images if r.step is None]
    parts = [
        "<details class='trail' id='trail'><summary>Reasoning trail "
        f"({len(trajectory.steps)} steps; click to unfold)</summary>",
        "<h3>Shown images</h3>",
    ]
    parts += [_figure(trajectory, record, images) for record in shown]
    by_step = {r.step: r for r in trajectory.images if r.step is not None}
    parts += [_step(trajectory, s, by_step.get(s.number), images) for s in trajectory.steps]
    if trajectory.answer:
        parts.append(
            f"<div class='step'><h3>Answer</h3><p class='muted'>"
            f"{escape(trajectory.answer.thought)}</p><p>{escape(trajectory.answer.text)}</p></div>"
        )
    parts.append("</details>")
    return "\n".join(parts)


def _step(trajectory: Trajectory, step: StepRecord, image: ImageRecord | None, images) -> str:
    css = "step error" if step.error else "step"
    call = escape(json.dumps(step.arguments))
    asked = [n for n, f in enumerate(trajectory.follow_ups, 1) if step.number in f.steps]
    during = f" (for follow-up Q{asked[0]})" if asked else ""
    return (
        f"<div class='{css}' id='step-{step.number}'><h3>Step {step.number}: "
        f"<code>{escape(step.tool)}</code>{during}</h3>"
        f"<p class='muted'>{escape(step.thought)}</p><pre>{call}</pre>"
        f"<p>{escape(step.observation)}</p>"
        f"{_figure(trajectory, image, images) if image else ''}"
        f"<p class='muted'>policy {step.policy_s:.3f} s, tool {step.tool_s:.3f} s</p></div>"
    )


def _figure(trajectory: Trajectory, record: ImageRecord, images: dict[int, str]) -> str:
    sheet = " class='sheet'" if record.frame_files else ""
    place = (
        escape(describe(where(trajectory, record))) if not record.frame_files else _frames(record)
    )
    return (
        f"<figure id='image-{record.index}'{sheet}><img src='{images[record.index]}' "
        f"alt='image #{record.index}'><figcaption>#{record.index} {escape(record.tool)} "
        f"{record.width}x{record.height}: {place}</figcaption></figure>"
    )


def _frames(record: ImageRecord) -> str:
    """A contact sheet links each of its frames at full size."""
    links = ", ".join(
        f"<a href='{escape(name)}'>{time:.3f} s (frame {frame})</a>"
        for name, frame, time in zip(record.frame_files, record.frames, record.times_s, strict=True)
    )
    return f"contact sheet of {len(record.frames)} frames: {links}"


def _identifiers(trajectory: Trajectory) -> str:
    """UIDs are for systems, not readers: kept, folded away."""
    rows = [
        ("Study Instance UID", trajectory.study_instance_uid),
        ("Series Instance UID", trajectory.series_instance_uid),
        *(
            (
                f"image #{r.index} SOP Instance UID, frame",
                f"{r.source.sop_instance_uid}, {r.source.frame}",
            )
            for r in trajectory.images
            if r.step is None
        ),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<details><summary>Identifiers</summary><table>{table}</table></details>"
