"""Writes the golden transcripts in this folder from the UPSTREAM code and data, not from ours.

    python tests/data/golden/generate.py /path/to/SII-zyj+Ophiuchus/repo   # a git dir or checkout

It imports nothing from edge-agent. It reads SII-zyj/Ophiuchus at COMMIT with `git show`:
- the SFT samples (data/example/data_case/biomedparser-SFT.json) are rendered as LLaMA-Factory's
  `qwen2_vl` template does (system/user/assistant slots, identical to the Qwen2.5-VL chat template
  below for a conversation that starts with a system message), `<image>` -> the vision span;
- an RL rollout is built by running the upstream env itself (agent_system/.../medical_agent/
  envs.py, MedicalAgentWorker: reset + step, with gym/ray/requests stubbed and the two
  segmentation servers answered from the sample masks), and rendered as the upstream rollout does
  (agent_system/multi_turn_rollout/rollout_loop.py: tokenizer.apply_chat_template(messages) with
  Qwen2.5-VL-7B-Instruct's chat template, then `<image>` -> `<|vision_start|><|image_pad|>
  <|vision_end|>`).
- the MedScope video read is PROVISIONAL: no upstream code exists; it is written by hand here from
  the framework figure's layout (<think>, <tool_call>{"name", "arguments"}</tool_call>, <answer>)
  and the provisional texts, so it pins our rendering until MedScope's code is released.
Each case is NAME.json (what our test feeds our profile: question, image sizes, replies) and
NAME.txt (the expected rendering)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

COMMIT = "256023386c4f3241cdecebc80e00b96c61126128"
HERE = Path(__file__).parent
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
# Qwen/Qwen2.5-VL-7B-Instruct, chat_template.json (the base model's template; Ophiuchus keeps it).
QWEN25VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def upstream(repo: Path, path: str) -> bytes:
    return subprocess.run(
        ["git", f"--git-dir={_git_dir(repo)}", "show", f"{COMMIT}:{path}"],
        check=True,
        capture_output=True,
    ).stdout


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The upstream rollout's rendering: the chat template, then `<image>` -> the vision span."""
    import jinja2

    template = jinja2.Environment().from_string(QWEN25VL_TEMPLATE)
    text = template.render(messages=messages, add_generation_prompt=add_generation_prompt)
    return text.replace("<image>", VISION)


def sft_cases(repo: Path) -> None:
    samples = json.loads(upstream(repo, "data/example/data_case/biomedparser-SFT.json"))
    for number, sample in enumerate(samples, start=1):
        turns = sample["conversations"]
        first = turns[1]["content"]
        # The options as the sample lists them, one per line: "(A) pancreas tumor" ...
        options = first.split(" Options: ", 1)[1].split("\nThe index of")[0].splitlines()
        sizes = [[512, 512]]  # the sample's first image (Images/case*/..._original_image_1.png)
        for turn in turns[3::2]:  # "The index of the given image is i (width: W, height: H)."
            tail = turn["content"].split("(width: ", 1)[1]
            sizes.append([int(tail.split(",")[0]), int(tail.split("height: ")[1].split(")")[0])])
        case = {
            "profile": "ophiuchus-v1-sft",
            "source": f"SII-zyj/Ophiuchus@{COMMIT}:data/example/data_case/biomedparser-SFT.json"
            f" [{number - 1}]",
            "question": sample["question"] + "\n" + "\n".join(options),
            "images": sizes,
            "replies": [t["content"] for t in turns if t["role"] == "assistant"],
        }
        write(f"ophiuchus_sft_{number}", case, render(turns))


def rl_case(repo: Path) -> None:
    """Run the upstream env: reset, then the model's replies as steps."""
    work = Path(tempfile.mkdtemp())
    images = "data/example/data_case/Images/case1/liver_case_"
    original, mask = work / "original.png", work / "mask.png"
    original.write_bytes(upstream(repo, images + "original_image_1.png"))
    mask.write_bytes(upstream(repo, images + "BioMedParse_mask_2.png"))
    env = _load_env(repo)

    def tool_server(self, endpoint, payload, expect_binary=False):
        import numpy as np
        from PIL import Image

        if not expect_binary:  # BiomedParse answers with a mask file
            return {"mask_path": str(mask)}
        masks = (np.array(Image.open(mask).convert("L")) > 127)[None].astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, masks=masks, scores=np.array([0.9], dtype=np.float32))
        return buffer.getvalue()

    env.MedicalToolClient.run = tool_server
    worker = env.MedicalAgentWorker(seed=0, env_kwargs={"output_dir": str(work / "out")})
    rl = json.loads(upstream(repo, "data/example/data_case/biomedparser-RL.json"))[0]
    worker.reset({**rl, "image_path": [str(original)]})
    replies = [
        "<think> The liver shows a hypodense region. I will segment it with BiomedParse.\n"
        '</think> Action: BiomedParse\n```json\n[\n    {\n        "index": 1,\n'
        '        "captions": "liver tumor"\n    }\n]\n```',
        "<think> The mask covers the lesion; I refine it with SAM2 on its box.</think> "
        'Action: SAM2\n```json\n[{"index": 2, "bbox_2d": [80, 285, 135, 340]}]\n```',
        "<think> A closer look at the margins.</think> Action: Zoom-in\n```json\n"
        '[{\n    "index": 3,\n    "bbox_2d": [70, 270, 150, 350]\n}]\n```',
        "<think> An irregular hypodense liver lesion: a liver tumor.\n</think> Action: Answer\n"
        "<answer> C </answer>",
    ]
    for reply in replies:
        worker.step(reply)
    messages = worker._messages
    assert [m["role"] for m in messages].count("user") == 4, "every tool call must have run"
    case = {
        "profile": "ophiuchus-v1",
        "source": f"SII-zyj/Ophiuchus@{COMMIT}: envs.py MedicalAgentWorker on biomedparser-RL.json"
        " [0] and Images/case1",
        "question": rl["question"] + "\n" + "\n".join(rl["options"]),
        "images": [[m["width"], m["height"]] for m in worker._images],
        "replies": replies,
    }
    write("ophiuchus_rl_rollout", case, render(messages))
    overlay_sample(worker._images[1]["path"], original, mask)


def overlay_sample(overlay: str, original: Path, mask: Path) -> None:
    """The upstream env's BiomedParse overlay (red, alpha 0.5) around the lesion, beside its
    inputs, to check our rendering against to the last bit."""
    import numpy as np
    from PIL import Image

    box = np.s_[280:350, 70:150]
    np.savez_compressed(
        HERE / "overlay_biomedparse.npz",
        image=np.array(Image.open(original).convert("RGB"))[box],
        mask=(np.array(Image.open(mask).convert("L")) > 127)[box],
        overlay=np.array(Image.open(overlay).convert("RGB"))[box],
    )


def _load_env(repo: Path) -> types.ModuleType:
    """envs.py with its cluster imports (gym, ray, requests) stubbed; prompts from upstream."""
    for name in ("gym", "ray", "requests"):
        stub = types.ModuleType(name)
        stub.Env = object
        sys.modules[name] = stub
    prompts = types.ModuleType("agent_system.environments.prompts.medical_agent")
    exec(upstream(repo, "agent_system/environments/prompts/medical_agent.py"), prompts.__dict__)
    for name in ("agent_system", "agent_system.environments", "agent_system.environments.prompts"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules[prompts.__name__] = prompts
    env = types.ModuleType("medical_agent_envs")
    path = "agent_system/environments/env_package/medical_agent/envs.py"
    exec(compile(upstream(repo, path), path, "exec"), env.__dict__)
    return env


def medscope_case() -> None:
    """PROVISIONAL, by hand: the provisional profile's texts in the figure's call layout."""
    system = (
        "You are a clinical video assistant that thinks with videos. You first see an overview: "
        "frames sampled over the whole video, each labelled with its time. Before answering, you "
        "may call one tool per turn to look again at the moments that matter; times are seconds "
        "from the start of the video.\nTools:\n- crop_video(start_time, end_time): frames spread "
        "over [start_time, end_time] seconds, as one sheet.\n- get_frame(timestamp): the frames "
        "nearest to timestamp seconds.\nReply with <think>your reasoning</think>, then either "
        '<tool_call>{"name": ..., "arguments": {...}}</tool_call> or <answer>your answer, naming '
        "the times you saw</answer>."
    )
    question = "When is the nucleus separated?"
    replies = [
        "<think>I need the start and end of this step.</think>\n<tool_call>\n"
        '{"name": "crop_video", "arguments": {"start_time": 2.0, "end_time": 3.5}}\n</tool_call>',
        '<think>Around 3 s.</think>\n<tool_call>{"name": "get_frame", "arguments": '
        '{"timestamp": 3.1}}</tool_call>',
        "<think>The nucleus moves freely from 3.1 s.</think>\n<answer>At 3.1 s.</answer>",
    ]
    sheet = "8 frames from {:.2f} to {:.2f} s"
    shown = [
        (sheet.format(0.0, 4.67), 512, 288),
        (sheet.format(2.0, 3.5), 512, 288),
        ("the frame at 3.100 s", 512, 384),
    ]
    messages = [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": f"<image>\n{question}\nThe video lasts 4.67 s. The image is {shown[0][0]}"
            f" (width: {shown[0][1]}, height: {shown[0][2]}).",
        },
    ]
    for reply, result in zip(replies, [*shown[1:], None], strict=True):
        messages.append({"role": "assistant", "content": reply})
        if result is not None:
            what, width, height = result
            text = f"<image>\nThe image is {what} (width: {width}, height: {height})."
            messages.append({"role": "user", "content": text})
    case = {
        "profile": "medscope-provisional",
        "source": "PROVISIONAL: SII-WenjieLisjtu/MedScope@e84daec9 figure_framework.png layout",
        "question": question,
        "duration_s": 4.67,
        "images": [[w, h] for _, w, h in shown],
        "replies": replies,
    }
    write("medscope_provisional_video", case, render(messages))


def write(name: str, case: dict, expected: str) -> None:
    (HERE / f"{name}.json").write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
    (HERE / f"{name}.txt").write_text(expected)
    print(f"{name}: {len(expected)} characters")


if __name__ == "__main__":
    repository = Path(sys.argv[1])
    sft_cases(repository)
    rl_case(repository)
    medscope_case()
