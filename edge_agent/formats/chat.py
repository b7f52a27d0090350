"""A model policy's side of one turn, for any prompt format: the chat text it adds (Qwen chat
template: the first turn carries the system prompt, the question and the shown images; a later one
the end of the last reply, the newest observation and any image the tool made)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from edge_agent.agent import ReadContext
    from tools.workspace import WorkspaceImage


class PromptFormat(Protocol):
    def system_prompt(self) -> str: ...

    def image_line(self, image: WorkspaceImage, marker: str) -> str: ...


def turn_text(
    form: PromptFormat, context: ReadContext, first_new: int, marker: str, pending: str
) -> str:
    """What turn k adds; `marker` stands for each new image, `pending` ends the last reply."""
    workspace = context.workspace
    lines = [form.image_line(workspace.get(i), marker) for i in range(first_new, len(workspace))]
    if first_new == 0:
        text = (
            f"<|im_start|>system\n{form.system_prompt()}<|im_end|>\n"
            f"<|im_start|>user\n{context.question}\n" + "\n".join(lines)
        )
    else:
        observation = context.observation.text if context.observation else ""
        text = f"{pending}<|im_start|>user\nObservation: {observation}\n" + "\n".join(lines)
    return text + "<|im_end|>\n<|im_start|>assistant\n"
