"""What the model is shown is what it saw in training: shown images within the profile's
max_pixels, a Zoom-in as the raw crop (enlarged for the encoder when tiny, its turn stating its
own size), a BiomedParse result as the whole image with the located regions painted red; and
every box the model draws on any of them maps back to the right source pixels."""

from __future__ import annotations

import numpy as np

from edge_agent.agent import Budget, ReadContext, run
from edge_agent.formats import format_for, load_profile, shown_size
from edge_agent.formats.render import paint_mask
from edge_agent.policies.llama_cpp import LlamaCppSettings
from edge_agent.policies.onnx_trt import OnnxTrtSettings
from edge_agent.policies.session import ModelSession
from edge_agent.trajectory import PolicyRecord
from tests.edge_agent.test_session import Scripted
from tests.support import disc, phantom_frame
from tools.observation import LocatePayload
from tools.render import to_rgb
from tools.toolbox import default_toolbox
from tools.workspace import Workspace

PROFILE = load_profile("ophiuchus-v1")


def _marked(rows: int, cols: int, at: tuple[int, int]):
    """A CT frame of soft tissue with one bright 4 x 4 block at source (column, row) `at`."""
    values = np.full((rows, cols), 40)
    values[at[1] : at[1] + 4, at[0] : at[0] + 4] = 1000
    return phantom_frame(values)


def _brightest(pixels: np.ndarray) -> tuple[int, int]:
    grey = pixels if pixels.ndim == 2 else pixels.mean(axis=2)
    row, col = np.unravel_index(int(np.argmax(grey)), grey.shape)
    return int(col), int(row)


def test_a_model_policy_shows_images_within_the_profiles_max_pixels_by_default():
    assert LlamaCppSettings().image_size == 0 and OnnxTrtSettings().image_size == 0
    assert shown_size(None).max_pixels == PROFILE.max_pixels == 262144
    assert shown_size(PROFILE, max_side=384).max_side == 384  # a configured size still wins


def test_a_non_square_image_is_shown_within_max_pixels_and_its_boxes_map_back():
    frame = _marked(600, 1000, at=(700, 300))
    size = shown_size(PROFILE)
    image = Workspace().show(frame, max_side=size.max_side, max_pixels=size.max_pixels)
    width, height = image.size
    assert width * height <= PROFILE.max_pixels < (width + 1) * (height + 1)
    assert abs(width / height - 1000 / 600) < 0.01  # the aspect is kept
    x, y = _brightest(image.pixels)  # where the model sees the block, in shown pixels
    x1, y1, x2, y2 = image.to_source.map_box((x - 1, y - 1, x + 2, y + 2))
    assert x1 <= 701 <= x2 and y1 <= 301 <= y2  # the block's pixels, in the source
    np.testing.assert_allclose(image.to_source.apply([(width, height)]), [(1000, 600)])


def test_a_zoom_in_is_the_raw_crop_its_turn_states_and_a_box_on_it_maps_back():
    workspace, toolbox = Workspace(), default_toolbox()
    original = workspace.show(_marked(512, 512, at=(300, 200)), max_pixels=PROFILE.max_pixels)
    context = ReadContext("Where is it?", workspace, toolbox, Budget())
    form = format_for(context, PROFILE)
    reply = (
        "<think>look</think> Action: Zoom-in\n```json\n"
        '[{"index": 1, "bbox_2d": [250.7, 150.2, 370.9, 250]}]\n```'
    )
    call = form.parse(reply, len(workspace))
    observation = toolbox.call(call.tool, call.arguments, workspace)
    zoom = observation.image
    assert zoom.size == (120, 100)  # upstream img.crop((250, 150, 370, 250)): not resized
    np.testing.assert_array_equal(zoom.pixels, original.pixels[150:250, 250:370])
    (message,) = form.messages(_after(context, call, observation), len(workspace) - 1)
    assert "The index of the given image is 2 (width: 120, height: 100)." in message.text
    (encoder,) = message.images  # under 256 x 256 pixels: enlarged, as upstream process_image
    assert encoder.shape[:2] == (
        int(100 * 65536**0.5 / 12000**0.5),
        int(120 * (65536 / 12000) ** 0.5),
    )
    x, y = _brightest(zoom.pixels)  # a box the model draws on the crop
    x1, y1, x2, y2 = zoom.to_source.map_box((x, y, x + 4, y + 4))
    assert (x1, y1, x2, y2) == (300, 200, 304, 204)  # the block's source pixels, exactly


def _after(context: ReadContext, call, observation) -> ReadContext:
    """The context after a tool step, as the agent loop makes it."""
    from dataclasses import replace

    from edge_agent.trajectory import StepRecord

    step = StepRecord(
        1,
        call.tool,
        dict(call.arguments),
        image=observation.image.index,
        payload=observation.payload,
    )
    return replace(context, steps=(step,), observation=observation)


class _Pictures(Scripted):
    """The scripted back end, keeping every image it was given."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.pictures: list[np.ndarray] = []

    def prompt(self, text, pictures):
        self.pictures += pictures
        return super().prompt(text, pictures)


class _ScriptedModel:
    record = PolicyRecord("scripted", "Scripted model", "test only")

    def __init__(self, backend: _Pictures) -> None:
        self.backend = backend

    def open(self, context):
        return ModelSession(self.backend, format_for(context, PROFILE))

    def close(self) -> None:
        pass


def test_a_biomedparse_result_is_shown_as_the_image_with_the_located_regions_in_red():
    values = disc((256, 256), (128, 128), 50, (0.5, 0.5), 40, -1000)  # a body of soft tissue
    values = np.where(disc((256, 256), (100, 110), 8, (0.5, 0.5), 1, 0) > 0, 200, values)
    workspace = Workspace()
    parent = workspace.show(phantom_frame(values), max_pixels=PROFILE.max_pixels)
    backend = _Pictures(
        [
            "<think>find it</think> Action: BiomedParse\n```json\n"
            '[{"index": 1, "captions": "hyperdense lesion"}]\n```',
            "<think>red</think> Action: Answer\n<answer>a lesion</answer>",
        ]
    )
    trajectory = run(workspace, "Lesion?", _ScriptedModel(backend), default_toolbox(), Budget())
    assert trajectory.end_reason == "answer", trajectory.end_detail
    payload = trajectory.steps[0].payload
    assert isinstance(payload, LocatePayload) and payload.candidates and payload.mask.any()
    shown = backend.pictures[1]  # the second turn's image: the locate result, as the model saw it
    expected = paint_mask(to_rgb(parent.pixels), payload.mask, (255, 0, 0), 0.5)
    np.testing.assert_array_equal(shown, expected)
    x1, y1, x2, y2 = payload.candidates[0].bbox_2d
    assert payload.mask[y1:y2, x1:x2].any() and not payload.mask[:, :x1].any()
    assert '"mask": ' not in trajectory.to_json()  # pixels stay out of the record
