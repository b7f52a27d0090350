"""A model policy's side of one turn, for any profile: the chat text it adds (the Qwen2.5-VL chat
template, as the checkpoint's own `chat_template` renders it: `<|im_start|>role\\n...<|im_end|>\\n`
per message, then the assistant's generation prompt), and the images in marker order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.formats.turns import Message

GENERATION_PROMPT = "<|im_start|>assistant\n"  # the template's add_generation_prompt

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from edge_agent.agent import ReadContext
    from edge_agent.formats.turns import ProfileFormat


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
    return text + GENERATION_PROMPT, images


def question_input(form: ProfileFormat, question: str, marker: str, pending: str) -> str:
    """A question asked after the answer: a user turn holding the question as typed (no profile
    has a trained string for it; an image placeholder or marker in it is dropped)."""
    text = question.replace(marker, "").replace(form.profile.placeholder, "").strip()
    message = Message("user", text)
    return pending + chat_text([message], form.profile.placeholder, marker) + GENERATION_PROMPT
