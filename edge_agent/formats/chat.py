"""A model policy's side of one turn, for any profile: the chat text it adds (the Qwen2.5-VL chat
template, as the checkpoint's own `chat_template` renders it: `<|im_start|>role\\n...<|im_end|>\\n`
per message, then the assistant's generation prompt), the images in marker order, and what the
parsed reply decides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.agent import Answer, Claim, Decision, ToolCall

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np

    from edge_agent.agent import ReadContext
    from edge_agent.formats.gbnf import Reply
    from edge_agent.formats.turns import Message, ProfileFormat


def chat_text(messages: Sequence[Message], placeholder: str, marker: str) -> str:
    """Messages in the chat template's framing; each image placeholder becomes `marker`."""
    return "".join(
        f"<|im_start|>{m.role}\n{m.text.replace(placeholder, marker)}<|im_end|>\n" for m in messages
    )


def turn_input(
    form: ProfileFormat, context: ReadContext, first_new: int, marker: str, pending: str
) -> tuple[str, list[np.ndarray]]:
    """What turn k adds (text and images), from workspace image `first_new` on; `marker` stands
    for each image, `pending` ends the last reply."""
    messages = form.messages(context, first_new)
    text = pending + chat_text(messages, form.profile.placeholder, marker)
    images = [image for message in messages for image in message.images]
    return text + "<|im_start|>assistant\n", images


def decision(form: ProfileFormat, reply: Reply, context: ReadContext, usage: Mapping) -> Decision:
    """A tool call, or an answer citing the newest image the model looked at; each step records
    the prompt profile it was made under (and says so when the format is provisional)."""
    usage = {**usage, "prompt_profile": form.profile.label}
    if reply.tool is None:
        text = f"{reply.answer}. {reply.option}" if reply.option else reply.answer
        evidence = (form.newest_shown(context.workspace),)
        return Answer(text, (Claim(text, evidence),), reply.thought, usage)
    return ToolCall(reply.tool, reply.arguments, reply.thought, usage)
