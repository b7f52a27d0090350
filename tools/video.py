"""get_frame and crop_video: the video tools. A read of a cine or video starts from an overview
sheet of the whole timeline; the policy then fetches the moments it needs, by seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from imaging.frame import Frame
from imaging.video import Timeline, VideoError
from tools.errors import ToolError
from tools.observation import FramePayload, Observation, SheetPayload
from tools.registry import Tool
from tools.render import contact_sheet
from tools.workspace import Affine, Workspace, WorkspaceImage

MAX_SHEET_FRAMES = 16
SECONDS = {"type": "number", "minimum": 0, "description": "seconds from the start of the video"}


def get_frame(arguments: Mapping, workspace: Workspace, *, size: int) -> Observation:
    """The frame at t, as a new image the pixel tools (zoom, segment, measure) can work on; with
    `nearest` > 1, the frames nearest t as one contact sheet (MedScope's get_frame shows three)."""
    count = int(arguments.get("nearest", 1))
    if count > 1:
        return _nearest_sheet(workspace, float(arguments["t"]), count, size)
    frame = _timeline(workspace, lambda timeline: timeline.frame_at(float(arguments["t"])))
    image = workspace.show(frame, max_side=min(size, max(frame.shape)), tool="get_frame")
    return Observation(
        text=f"Image #{image.index} is frame {frame.ref.frame} at {frame.time_s:.3f} s "
        f"(asked for {float(arguments['t']):g} s).",
        image=image,
        payload=FramePayload(frame.ref.frame, round(frame.time_s or 0.0, 6)),
    )


def _nearest_sheet(workspace: Workspace, t: float, count: int, size: int) -> Observation:
    frames = _timeline(workspace, lambda timeline: nearest_frames(timeline, t, count))
    return _sheet(workspace, frames, "get_frame", size, f"the {len(frames)} frames nearest {t:g} s")


def nearest_frames(timeline: Timeline, t: float, count: int) -> list[Frame]:
    """The `count` distinct frames whose times are nearest `t`, in time order (at either end of
    the video, the ones after or before it)."""
    timeline.check_time(t)
    step = timeline.duration_s / max(1, timeline.frame_count)
    near: dict[int, Frame] = {}
    for k in range(-count, count + 1):
        at = t + k * step
        if 0 <= at < timeline.duration_s:
            frame = timeline.frame_at(at)
            near.setdefault(frame.ref.frame, frame)
    chosen = sorted(near.values(), key=lambda f: (abs((f.time_s or 0.0) - t), f.time_s))[:count]
    return sorted(chosen, key=lambda f: f.time_s or 0.0)


def crop_video(arguments: Mapping, workspace: Workspace, *, size: int) -> Observation:
    """n frames of a time window as one contact sheet; each frame is kept as evidence."""
    start, end, count = float(arguments["start"]), float(arguments["end"]), int(arguments["n"])
    frames = _timeline(workspace, lambda timeline: timeline.frames_between(start, end, count))
    what = f"{len(frames)} frames from {start:g} to {end:g} s"
    return _sheet(workspace, frames, "crop_video", size, what)


def _sheet(workspace: Workspace, frames: Sequence[Frame], tool: str, size: int, what: str):
    """One contact sheet of `frames` as a tool's observation, each frame named with its time."""
    image = add_sheet(workspace, frames, tool=tool, size=size)
    return Observation(
        text=f"Image #{image.index} shows {what}: "
        + ", ".join(f"{f.time_s:.2f} s (frame {f.ref.frame})" for f in frames)
        + ".",
        image=image,
        payload=SheetPayload(tuple(f.ref.frame for f in frames), image.times_s),
    )


def add_sheet(
    workspace: Workspace, frames: Sequence[Frame], *, tool: str, size: int
) -> WorkspaceImage:
    """A contact sheet about `size` pixels wide; its members are the frames themselves."""
    pixels = contact_sheet(frames, width=size)
    return workspace.add(
        frames[0],
        Affine.identity(),
        (pixels.shape[1], pixels.shape[0]),
        None,
        tool=tool,
        pixels=pixels,
        members=tuple(frames),
        roi_px=(0.0, 0.0, float(frames[0].shape[1]), float(frames[0].shape[0])),  # whole frames
    )


def show_overview(workspace: Workspace, count: int, size: int) -> WorkspaceImage:
    """The first image of a video read: `count` frames spread over the whole timeline."""
    timeline = workspace.timeline
    if timeline is None:
        raise ValueError("show_overview needs a workspace with a timeline")
    frames = timeline.frames_between(0.0, timeline.duration_s, count)
    return add_sheet(workspace, frames, tool="shown", size=size)


def _timeline(workspace: Workspace, fetch):
    if workspace.timeline is None:
        raise ToolError("this read has no video or cine; the video tools need one")
    try:
        return fetch(workspace.timeline)
    except VideoError as exc:
        raise ToolError(str(exc)) from None


def tools(size: int) -> list[Tool]:
    return [
        Tool(
            name="get_frame",
            description="The video frame at t seconds, as a new image.",
            parameters={
                "type": "object",
                "properties": {
                    "t": SECONDS,
                    "nearest": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_SHEET_FRAMES,
                        "description": "how many frames nearest t (more than 1: one sheet)",
                    },
                },
                "required": ["t"],
                "additionalProperties": False,
            },
            run=lambda arguments, workspace: get_frame(arguments, workspace, size=size),
        ),
        Tool(
            name="crop_video",
            description="n frames spread over [start, end] seconds, as one contact sheet with "
            "their times burned in.",
            parameters={
                "type": "object",
                "properties": {
                    "start": SECONDS,
                    "end": SECONDS,
                    "n": {"type": "integer", "minimum": 2, "maximum": MAX_SHEET_FRAMES},
                },
                "required": ["start", "end", "n"],
                "additionalProperties": False,
            },
            run=lambda arguments, workspace: crop_video(arguments, workspace, size=size),
        ),
    ]
