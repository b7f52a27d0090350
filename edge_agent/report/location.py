"""Where a finding is and how a read ended, in the words a reader uses: series, instance, slice
position, frame and time instead of UIDs and step names."""

from __future__ import annotations

from edge_agent.trajectory import ClaimRecord, ImageRecord, Trajectory

_SIDES = {
    "L": "patient's left",
    "R": "patient's right",
    "A": "anterior",
    "P": "posterior",
    "H": "head",
    "F": "feet",
}
ENDINGS = {
    "answer": "The policy answered after {steps} tool call(s).",
    "max_turns": "Stopped before an answer: the limit on tool calls was reached ({detail}).",
    "time_limit": "Stopped before an answer: the time limit was reached ({detail}).",
    "policy_error": "Stopped before an answer: the policy failed ({detail}).",
}


def how_it_ended(trajectory: Trajectory) -> str:
    """One sentence for "Read ended: answer"."""
    template = ENDINGS.get(trajectory.end_reason, "Ended: {reason} ({detail}).")
    asked_later = sum(len(f.steps) for f in trajectory.follow_ups)  # a model's follow-up steps
    return template.format(
        steps=len(trajectory.steps) - asked_later,
        detail=trajectory.end_detail,
        reason=trajectory.end_reason,
    )


def key_image(trajectory: Trajectory, claim: ClaimRecord) -> ImageRecord:
    """The image a reader looks at first: the last one the finding cites (the measured outline,
    or the frame fetched from a cine), which carries every overlay the tools drew."""
    return trajectory.image(claim.evidence[-1])


def where(trajectory: Trajectory, image: ImageRecord) -> dict:
    """The key image's place in the study; only what the source files say."""
    place = {
        "series_number": trajectory.series_number,
        "series_description": trajectory.series_description or None,
        "instance_number": image.instance_number,
        "slice_position_mm": image.slice_position_mm,
    }
    if any(image.edges):
        place["image_right"] = _SIDES[image.edges[1]]
    if image.times_s and len(image.frames) == 1:
        place |= {"frame": image.frames[0], "time_s": image.times_s[0]}
    elif image.times_s:
        place |= {"frames": list(image.frames), "time_window_s": list(image.time_window_s)}
    else:
        place["frame"] = image.source.frame
    return {key: value for key, value in place.items() if value is not None}


def describe(place: dict) -> str:
    """ "Series 2 (AX T2), instance 14, slice position -32.5 mm, frame 1" for the page."""
    parts = []
    if "series_number" in place or "series_description" in place:
        number = place.get("series_number", "")
        description = place.get("series_description")
        parts.append(f"Series {number}".strip() + (f" ({description})" if description else ""))
    if "instance_number" in place:
        parts.append(f"instance {place['instance_number']}")
    if "slice_position_mm" in place:
        parts.append(f"slice position {place['slice_position_mm']:g} mm")
    if "time_s" in place:
        parts.append(f"frame {place['frame']} at {place['time_s']:.3f} s")
    elif "frames" in place:
        start, end = place["time_window_s"]
        parts.append(f"frames {place['frames'][0]}-{place['frames'][-1]} ({start:.3f}-{end:.3f} s)")
    elif place.get("frame", 1) != 1:  # a single-frame image has only frame 1: not worth saying
        parts.append(f"frame {place['frame']}")
    if "image_right" in place:
        parts.append(f"image right = {place['image_right']}")
    return ", ".join(parts) or "the shown image"
