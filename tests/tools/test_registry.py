from __future__ import annotations

import numpy as np
import pytest
from jsonschema.exceptions import SchemaError

from tests.support import phantom_frame
from tools.errors import ToolCallError
from tools.observation import Observation
from tools.registry import Tool, Toolbox
from tools.toolbox import default_toolbox
from tools.workspace import Workspace


def test_every_default_tool_has_an_object_schema():
    toolbox = default_toolbox()
    assert set(toolbox.names) == {
        *("zoom_in", "window", "segment", "locate", "measure", "get_frame", "crop_video")
    }
    for spec in toolbox.specs():
        assert spec["parameters"]["type"] == "object" and spec["description"]


def test_a_malformed_schema_fails_when_the_tool_is_defined():
    with pytest.raises(SchemaError):
        Tool(
            "bad",
            "broken",
            {"type": "object", "properties": {"x": {"type": "nope"}}},
            lambda a, w: Observation("x"),
        )


def test_an_unknown_tool_is_answered_with_the_valid_names():
    with pytest.raises(ToolCallError, match="unknown tool 'zoom'; valid tools: zoom_in, window"):
        default_toolbox().validate("zoom", {})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"index": 0}, "'bbox_2d' is a required property"),
        ({"index": 0, "bbox_2d": [1, 2, 3]}, "bbox_2d: .* is too short"),
        ({"index": -1, "bbox_2d": [1, 2, 3, 4]}, "index: -1 is less than the minimum of 0"),
        ({"index": 0, "bbox_2d": [1, 2, 3, 4], "factor": 2}, "'factor' was unexpected"),
        ({"index": "0", "bbox_2d": [1, 2, 3, 4]}, "index: '0' is not of type 'integer'"),
    ],
)
def test_bad_arguments_never_reach_the_tool(arguments, message):
    reached = []
    toolbox = Toolbox(
        [
            Tool(
                "zoom_in",
                "z",
                default_toolbox()["zoom_in"].parameters,
                lambda a, w: reached.append(a),
            )
        ]
    )
    workspace = Workspace()
    workspace.show(phantom_frame(np.zeros((8, 8))))
    with pytest.raises(ToolCallError, match=message):
        toolbox.call("zoom_in", arguments, workspace)
    assert reached == []
