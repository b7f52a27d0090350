"""get_frame and crop_video on a DICOM video built here, whose frames carry their own index."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.selection import select
from imaging.records import to_plain
from imaging.study import load_study
from tests.videos import FPS, FRAMES, encode, read_index, video_study
from tools.errors import ToolError
from tools.toolbox import default_toolbox
from tools.video import show_overview
from tools.workspace import Workspace


@pytest.fixture(scope="module")
def timeline(tmp_path_factory):
    folder = video_study(tmp_path_factory.mktemp("video") / "study", encode("h264"))
    selection = select(load_study(folder), ("ES",), key_frames=3)
    assert "video, 90 frames, 3.0 s" in selection.reason
    return selection.timeline


@pytest.fixture
def workspace(timeline) -> Workspace:
    workspace = Workspace(timeline)
    show_overview(workspace, 16, 512)
    return workspace


def test_get_frame_returns_exactly_the_frame_for_t(workspace):
    toolbox = default_toolbox()
    for t in [0.0, 1 / FPS, 1.499, 1.5, *np.random.default_rng(2).uniform(0, 3, 8)]:
        seen = toolbox.call("get_frame", {"t": float(t)}, workspace)
        expected = int(t * FPS + 1e-6)
        assert read_index(seen.image.pixels) == expected, t
        assert to_plain(seen.payload)["frame"] == expected + 1
        assert to_plain(seen.payload)["time_s"] == pytest.approx(expected / FPS, abs=1e-6)
        assert seen.image.frame.ref.frame == expected + 1  # what the SR and SC will reference
        assert f"frame {expected + 1} at {expected / FPS:.3f} s" in seen.text


def test_crop_video_returns_the_right_timestamps_and_keeps_each_frame(workspace):
    seen = default_toolbox().call("crop_video", {"start": 1.0, "end": 2.0, "n": 5}, workspace)
    assert to_plain(seen.payload)["times_s"] == pytest.approx(
        [1.0, 1.2333, 1.5, 1.7333, 2.0], abs=1e-3
    )
    members = seen.image.members
    assert (
        [f.ref.frame for f in members] == to_plain(seen.payload)["frames"] == [31, 38, 46, 53, 61]
    )
    assert [read_index(f.pixels) for f in members] == [30, 37, 45, 52, 60]
    assert "1.50 s (frame 46)" in seen.text


def test_the_overview_spans_the_whole_video(workspace):
    overview = workspace.get(0)
    assert len(overview.members) == 16 and overview.tool == "shown"
    assert overview.times_s[0] == 0.0 and overview.times_s[-1] == pytest.approx(89 / FPS)
    assert overview.members[-1].ref.frame == FRAMES


def test_pixel_tools_refuse_a_contact_sheet_and_say_what_to_do(workspace):
    with pytest.raises(ToolError, match=r"contact sheet of 16 frames .*call get_frame"):
        default_toolbox().call("zoom_in", {"index": 0, "bbox_2d": [0, 0, 50, 50]}, workspace)


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("get_frame", {"t": 3.5}, "outside the video"),
        ("crop_video", {"start": 2.0, "end": 1.0, "n": 4}, "is empty"),
    ],
)
def test_times_outside_the_video_are_tool_errors(workspace, tool, arguments, message):
    with pytest.raises(ToolError, match=message):
        default_toolbox().call(tool, arguments, workspace)


def test_video_tools_on_a_read_without_video_say_so():
    with pytest.raises(ToolError, match="no video or cine"):
        default_toolbox().call("get_frame", {"t": 1.0}, Workspace())
