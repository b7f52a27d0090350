"""The prompt formats' grammars compile in llama.cpp and every reply they allow parses."""

from __future__ import annotations

import pytest

from edge_agent.formats.gbnf import FormatError
from edge_agent.formats.medscope import MedScopeFormat
from edge_agent.formats.ophiuchus import OphiuchusFormat
from tools.toolbox import default_toolbox


@pytest.mark.parametrize(
    "form", [OphiuchusFormat(default_toolbox()), MedScopeFormat(default_toolbox(), 30.0)]
)
def test_the_grammar_compiles_in_llama_cpp(form):
    from llama_cpp import LlamaGrammar

    assert LlamaGrammar.from_string(form.grammar(3), verbose=False) is not None


@pytest.mark.parametrize(
    ("reply", "tool", "arguments"),
    [
        ('{"name": "get_frame", "arguments": {"t": 12.533}}', "get_frame", {"t": 12.533}),
        (
            '{"name": "crop_video", "arguments": {"start": 10, "end": 14.5, "n": 8}}',
            "crop_video",
            {"start": 10, "end": 14.5, "n": 8},
        ),
    ],
)
def test_medscope_tool_calls_take_seconds(reply, tool, arguments):
    parsed = MedScopeFormat(default_toolbox(), 30.0).parse(
        f"<think>look again</think>\n<tool_call>{reply}</tool_call>"
    )
    assert (parsed.tool, parsed.arguments, parsed.thought) == (tool, arguments, "look again")


def test_medscope_answers_and_refuses_unknown_tools():
    form = MedScopeFormat(default_toolbox(), 30.0)
    answer = form.parse("<think>done</think>\n<answer>Bleeding at 12 s.</answer>")
    assert answer.tool is None and answer.answer == "Bleeding at 12 s."
    with pytest.raises(FormatError, match="unknown tool call"):
        form.parse('<think>x</think>\n<tool_call>{"name": "segment", "arguments": {}}</tool_call>')


def test_the_medscope_prompt_names_the_video_length_and_tools():
    prompt = MedScopeFormat(default_toolbox(), 30.0).system_prompt()
    assert "0 to 30.00" in prompt
    assert "crop_video(start, end, n)" in prompt and "get_frame(t)" in prompt


def test_the_grammar_allows_only_the_integers_a_tool_takes():
    grammar = MedScopeFormat(default_toolbox(), 30.0).grammar(2)
    rule = next(line for line in grammar.splitlines() if line.startswith("call-crop-video"))
    assert '"2" | "3"' in rule and '"16")' in rule and '"17"' not in rule


@pytest.mark.parametrize(
    "form", [OphiuchusFormat(default_toolbox()), MedScopeFormat(default_toolbox(), 30.0)]
)
def test_the_grammar_compiles_for_the_onnx_policy_too(form):
    import llguidance

    assert llguidance.grammar_from("gbnf", form.grammar(3))
