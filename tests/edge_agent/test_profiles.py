"""Prompt profiles are data: a profile file with a changed string changes the prompt and nothing
else, and a broken profile is refused on load with the file and the key named."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from edge_agent.formats import load_profile
from edge_agent.formats.ophiuchus import OphiuchusFormat
from edge_agent.formats.profile import ProfileError, available
from edge_agent.formats.question import Question

PROFILES = Path(__file__).parents[2] / "edge_agent" / "formats" / "profiles"
GOLDEN = Path(__file__).parents[1] / "data" / "golden"
TRAINED = "You are a helpful assistant specialized in medical image analysis."


def test_the_shipped_profiles_load_and_say_where_their_strings_come_from():
    assert set(available()) >= {"ophiuchus-v1", "ophiuchus-v1-sft", "medscope-provisional"}
    for name in available():
        profile = load_profile(name)
        assert profile.name == name
        assert {"system", "first_turn", "tool_result"} <= set(profile.sources)
    assert load_profile("ophiuchus-v1").sources["system"].startswith("SII-zyj/Ophiuchus@2560233")
    assert load_profile("medscope-provisional").provisional
    assert not load_profile("ophiuchus-v1").provisional


def test_the_ophiuchus_profile_holds_the_trained_facts():
    profile = load_profile("ophiuchus-v1")
    assert (profile.index_base, profile.max_pixels, profile.first_turn_images) == (1, 262144, 1)
    assert [t.action for t in profile.tools] == ["Zoom-in", "BiomedParse", "SAM2"]
    assert profile.tool("BiomedParse").arguments[1].kind == "text"  # captions: one string
    assert (profile.mask_colour, profile.mask_alpha) == ((255, 0, 0), 0.5)
    assert "(0, 0) and the bottom-right corner is (512, 512)" in profile.system


def test_a_copied_profile_with_a_changed_system_prompt_changes_only_the_prompt(tmp_path):
    changed = tmp_path / "ophiuchus-v2.toml"
    text = (PROFILES / "ophiuchus-v1.toml").read_text()
    changed.write_text(text.replace(TRAINED, "You are a radiology assistant.", 1))
    old, new = load_profile("ophiuchus-v1"), load_profile(changed)
    differing = [f.name for f in fields(old) if getattr(old, f.name) != getattr(new, f.name)]
    assert differing == ["system"]
    assert new.system == old.system.replace(TRAINED, "You are a radiology assistant.")
    case = json.loads((GOLDEN / "ophiuchus_rl_rollout.json").read_text())
    forms = [OphiuchusFormat(p, 1, Question.parse(case["question"])) for p in (old, new)]
    assert forms[0].system_prompt() != forms[1].system_prompt()
    assert forms[0].grammar(4) == forms[1].grammar(4)
    for number, reply in enumerate(case["replies"], start=1):
        assert forms[0].parse(reply, number) == forms[1].parse(reply, number)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("index_base = 1", "index_base = 2"), r"\[images\] index_base"),
        (lambda t: t.replace("max_pixels = 262144\n", ""), r"\[images\] max_pixels is missing"),
        (lambda t: t.replace("{question}", "{prompt}"), r"\[text\] first_turn uses unknown"),
        (lambda t: t.replace("<image>\n###", "###"), r"\[text\] first_turn must hold '<image>'"),
        (lambda t: t.replace('status = "trained"', 'status = "final"'), r"status = 'final'"),
        (lambda t: t.replace("think_tokens = 1024", 'think_tokens = "1024"'), "must be int"),
        (lambda t: t.replace('kind = "text"', 'kind = "list"'), r"\[\[tools\]\] #2"),
        (lambda t: t.replace("\n[sources]\n", "\n[sources]\n[nothing]\n"), "system is missing"),
        # Fields a read would fail to fill, or fill with a value its format spec refuses:
        (lambda t: t.replace("{letter}. {text}", "{letter}) {txt}"), r"\[options\] layout .*'txt'"),
        (lambda t: t.replace("{question}", "Case {} {question}"), r"first_turn: a positional"),
        (lambda t: t.replace("{question}", "{question:d}"), r"first_turn: Unknown format code"),
        (lambda t: t.replace("{question}", "{question:{pad}}"), r"first_turn .*\['pad'\]"),
        (lambda t: t.replace("input={input}", "input={input:>9}"), r"\[text\] tool_error: "),
        (lambda t: t.replace("{index}", "{index!z}"), r"\[text\] first_turn: "),
    ],
)
def test_a_broken_profile_is_refused_naming_the_key(tmp_path, edit, message):
    broken = tmp_path / "broken.toml"
    broken.write_text(edit((PROFILES / "ophiuchus-v1.toml").read_text()))
    with pytest.raises(ProfileError, match=message):
        load_profile(broken)


def test_an_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(ProfileError, match=r"shipped: .*ophiuchus-v1"):
        load_profile("ophiuchus-v9")


def test_a_provisional_profile_says_so_in_its_label():
    assert load_profile("medscope-provisional").label == "medscope-provisional (provisional format)"
    assert load_profile("ophiuchus-v1").label == "ophiuchus-v1"
