"""The reply grammars, run in llama.cpp's own grammar sampler with a real vocabulary: they let
through what the model wrote in training (pretty and compact JSON, the optional <tool_call>
wrapper, captions as a string, option letters) and nothing else (index 0, an image not shown yet,
captions as a list); and every reply they allow parses into a call our registry accepts."""

from __future__ import annotations

import pytest

from edge_agent.formats import load_profile
from edge_agent.formats.gbnf import FormatError
from edge_agent.formats.medscope import MedScopeFormat
from edge_agent.formats.ophiuchus import OphiuchusFormat
from edge_agent.formats.question import Question
from tests.edge_agent.grammar_check import GrammarCheck
from tools.toolbox import default_toolbox

QUESTION = "Is there an abnormality?\nA. pancreas tumor\nB. No abnormality detected\nC. liver tumor"
THINK = "<think> The liver has a hypodense lesion.\n</think> Action: "
PRETTY = '[\n    {\n        "index": 1,\n        "captions": "liver tumor"\n    }\n]'
SFT = '[{\n    "index": 1,\n    "captions": "liver tumor"\n}]'
COMPACT = '[{"index": 1, "bbox_2d": [200, 221, 210, 232]}]'


def ophiuchus(question: str = QUESTION, think_tokens: int | None = None) -> OphiuchusFormat:
    profile = load_profile("ophiuchus-v1")
    return OphiuchusFormat(profile, 1, Question.parse(question), think_tokens=think_tokens)


def medscope() -> MedScopeFormat:
    return MedScopeFormat(load_profile("medscope-provisional"), 1, Question.parse("When?"), 30.0)


@pytest.fixture(scope="module")
def check(exported):
    checker = GrammarCheck(exported / "model-q8_0.gguf")
    yield checker
    checker.close()


def call(action: str, body: str, wrap: bool = False) -> str:
    inner = f"{action}\n```json\n{body}\n```"
    return THINK + (f"<tool_call>{inner}</tool_call>" if wrap else inner)


GOOD = [
    call("BiomedParse", PRETTY),
    call("BiomedParse", SFT, wrap=True),
    call("SAM2", COMPACT),
    call("Zoom-in", COMPACT, wrap=True),
    THINK + "Answer\n<answer> C </answer>",
    THINK + "Answer\n<answer>A</answer>",
]
BAD = {
    "index 0": call("SAM2", COMPACT.replace('"index": 1', '"index": 0')),
    "an image not shown yet": call("SAM2", COMPACT.replace('"index": 1', '"index": 2')),
    "captions as a list": call("BiomedParse", SFT.replace('"liver tumor"', '["liver tumor"]')),
    "our tool name": call("zoom_in", COMPACT),
    "two calls": call("SAM2", COMPACT[:-1] + ", " + COMPACT[1:]),
    "a letter that is no option": THINK + "Answer\n<answer> D </answer>",
    "free text for a multiple-choice answer": THINK + "Answer\n<answer>liver tumor</answer>",
    "no thought": "Action: Answer\n<answer> C </answer>",
    "decimals in a box": call("SAM2", COMPACT.replace("200", "200.5")),
    "an unclosed wrapper": call("SAM2", COMPACT, wrap=True).removesuffix("</tool_call>"),
}


@pytest.mark.parametrize("reply", GOOD)
def test_the_grammar_allows_what_the_model_wrote_in_training_and_it_parses(reply, check):
    form = ophiuchus()
    assert check.accepts(form.grammar(1), reply)
    parsed = form.parse(reply, 1)
    if parsed.tool is not None:
        default_toolbox().validate(parsed.tool, parsed.arguments)  # our registry accepts it
        assert parsed.arguments["index"] == 0  # trained index 1 is workspace image 0


@pytest.mark.parametrize("what", sorted(BAD))
def test_the_grammar_refuses_what_was_never_trained(what, check):
    assert not check.accepts(ophiuchus().grammar(1), BAD[what])


def test_turn_one_can_only_name_image_1_and_later_turns_only_images_shown(check):
    form = ophiuchus()
    second = call("Zoom-in", COMPACT.replace('"index": 1', '"index": 2'))
    assert not check.accepts(form.grammar(1), second)
    assert check.accepts(form.grammar(2), second)
    assert form.parse(second, 2).arguments["index"] == 1


def test_key_slices_show_one_image_and_index_1_is_the_central_one():
    """Three key slices in the workspace (0, 1, 2): the model sees the middle one as image 1;
    the first tool output (workspace 3) is image 2."""
    form = OphiuchusFormat(load_profile("ophiuchus-v1"), 3, Question.parse(QUESTION))
    assert form.shown(3).workspace == (1,)
    assert form.parse(call("SAM2", COMPACT), 4).arguments["index"] == 1
    assert form.parse(call("SAM2", COMPACT.replace("1,", "2,", 1)), 4).arguments["index"] == 3
    with pytest.raises(FormatError, match="not shown"):
        form.parse(call("SAM2", COMPACT.replace("1,", "3,", 1)), 4)


def test_captions_are_a_string_and_become_our_one_item_list():
    parsed = ophiuchus().parse(call("BiomedParse", SFT, wrap=True), 1)
    assert parsed.tool == "locate" and parsed.arguments == {"index": 0, "captions": ["liver tumor"]}


def test_a_multiple_choice_answer_reads_back_as_the_option_letter():
    parsed = ophiuchus().parse(THINK + "Answer\n<answer> C </answer>", 1)
    assert (parsed.answer, parsed.option) == ("C", "liver tumor")


def test_a_free_question_takes_a_free_answer(check):
    form = ophiuchus("What do you see?")
    reply = THINK + "Answer\n<answer>A hypodense liver lesion.</answer>"
    assert check.accepts(form.grammar(1), reply)
    assert form.parse(reply, 1).answer == "A hypodense liver lesion."


def test_the_thought_is_bounded_from_a_token_setting(check):
    """Where the grammar cannot count tokens, the bound is think_tokens x chars_per_token."""
    form = ophiuchus(think_tokens=10)
    assert form.think_chars == 10 * form.profile.chars_per_token
    fits = "<think>" + "a" * form.think_chars + "</think> Action: Answer\n<answer> C </answer>"
    assert check.accepts(form.grammar(1), fits)
    assert not check.accepts(form.grammar(1), fits.replace("<think>", "<think>a"))


def test_the_default_thought_bound_holds_the_sft_thoughts(check):
    thought = " " + "The liver parenchyma shows an abnormality. " * 60  # ~2600 characters
    reply = f"<think>{thought}\n</think> Action: Answer\n<answer> C </answer>"
    assert check.accepts(ophiuchus().grammar(1), reply)


MEDSCOPE_GOOD = [
    '<think>Crop it.</think>\n<tool_call>\n{"name": "crop_video", "arguments": '
    '{"start_time": 87.0, "end_time": 88.0}}\n</tool_call>',
    '<think>One moment.</think><tool_call>{"name": "get_frame", "arguments": {"timestamp": 12}}'
    "</tool_call>",
    "<think>Seen.</think>\n<answer>The nucleus is separated at 88 s.</answer>",
]
MEDSCOPE_BAD = [
    '<think>x</think><tool_call>{"name": "zoom_in", "arguments": {"index": 1}}</tool_call>',
    '<think>x</think><tool_call>{"name": "crop_video", "arguments": {"start": 1, "end": 2, '
    '"n": 8}}</tool_call>',
]


@pytest.mark.parametrize("reply", MEDSCOPE_GOOD)
def test_medscope_calls_take_seconds_as_in_its_figure(reply, check):
    form = medscope()
    assert check.accepts(form.grammar(1), reply)
    parsed = form.parse(reply, 1)
    if parsed.tool is not None:
        default_toolbox().validate(parsed.tool, parsed.arguments)


def test_medscope_maps_its_calls_to_our_video_tools():
    crop, frame, _ = (medscope().parse(reply, 1) for reply in MEDSCOPE_GOOD)
    assert (crop.tool, crop.arguments) == ("crop_video", {"start": 87.0, "end": 88.0, "n": 8})
    # MedScope's get_frame returns the three nearest frames: our get_frame's sheet of them
    assert (frame.tool, frame.arguments) == ("get_frame", {"t": 12, "nearest": 3})


@pytest.mark.parametrize("reply", MEDSCOPE_BAD)
def test_medscope_has_no_zoom_and_no_frame_count(reply, check):
    assert not check.accepts(medscope().grammar(1), reply)
    with pytest.raises(FormatError):
        medscope().parse(reply, 1)


@pytest.mark.parametrize("form", [ophiuchus(), medscope()])
def test_the_grammar_compiles_for_the_onnx_policy_too(form):
    import llguidance

    grammar = llguidance.grammar_from("gbnf", form.grammar(3))
    assert llguidance.LLMatcher.validate_grammar(grammar) == ""


def test_a_failed_call_is_fed_back_as_the_trained_warning_line_with_trained_indices():
    import numpy as np

    from edge_agent.agent import Budget, ReadContext
    from edge_agent.trajectory import StepRecord
    from tests.support import phantom_frame
    from tools.observation import Observation
    from tools.workspace import Workspace

    workspace = Workspace()
    workspace.show(phantom_frame(np.zeros((64, 64))))
    box = [500, 500, 600, 600]
    failure = Observation.failure(f"box {box} lies outside image #0, which is 64x64 pixels")
    step = StepRecord(1, "zoom_in", {"index": 0, "bbox_2d": box}, error=True)
    context = ReadContext(
        QUESTION, workspace, default_toolbox(), Budget(), steps=(step,), observation=failure
    )
    [message] = ophiuchus().messages(context, 1)
    assert message.images == ()
    assert message.text == (
        "!!(Warning) tool call failed: tool=Zoom-in, input={'index': 1, 'bbox_2d': "
        "[500, 500, 600, 600]}, error=ToolError: box [500, 500, 600, 600] lies outside image 1, "
        "which is 64x64 pixels"
    )
