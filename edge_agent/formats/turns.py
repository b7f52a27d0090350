"""What a profile-driven format shows the model each turn, as chat messages: turn 1 the system
prompt and the first user turn (one image, the question, its options, the image's index and size);
each later turn the tool's output image and the trained index/size sentence, or the trained error
line when the call failed. Grammar and parsing are per syntax (ophiuchus.py, medscope.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge_agent.formats.calls import to_trained
from edge_agent.formats.profile import Profile
from edge_agent.formats.question import Question
from edge_agent.formats.render import shown_pixels
from edge_agent.formats.shown import ShownImages

IMAGE_NUMBER = re.compile(r"#(\d+)")

if TYPE_CHECKING:
    from edge_agent.agent import ReadContext
    from tools.observation import Payload
    from tools.workspace import Workspace, WorkspaceImage


@dataclass(frozen=True)
class Message:
    role: str  # system | user
    text: str  # the profile's placeholder stands where each image goes
    images: tuple[np.ndarray, ...] = ()  # RGB, in placeholder order


@dataclass(frozen=True)
class ProfileFormat:
    profile: Profile
    originals: int  # workspace images before any tool ran (a volume's key slices)
    question: Question
    duration_s: float | None = None  # a video's length, for a video read
    think_tokens: int | None = None  # None: the profile's default

    def system_prompt(self) -> str:
        return self.profile.system

    def shown(self, image_count: int) -> ShownImages:
        p = self.profile
        return ShownImages.of(image_count, self.originals, p.first_turn_images, p.index_base)

    thought_start, thought_end = "<think>", "</think>"  # both syntaxes

    @property
    def thought_tokens(self) -> int:
        """The thought's bound in tokens (the session core ends a thought there)."""
        return self.think_tokens or self.profile.think_tokens

    @property
    def think_chars(self) -> int:
        """The thought's bound in characters: the grammar's, where tokens cannot be counted."""
        return self.thought_tokens * self.profile.chars_per_token

    def messages(self, context: ReadContext, first_new: int) -> list[Message]:
        """The messages turn k adds, from workspace image `first_new` on."""
        workspace = context.workspace
        shown = self.shown(len(workspace))
        new = shown.since(first_new)
        if first_new == 0:
            first = workspace.get(new[0])
            return [
                Message("system", self.profile.system),
                self._first_turn(first, shown, workspace),
            ]
        if new:
            made = {step.image: step.payload for step in context.steps}
            return [self._tool_result(workspace.get(i), shown, workspace, made.get(i)) for i in new]
        return [Message("user", self._failure(context, shown))]

    def _first_turn(
        self, image: WorkspaceImage, shown: ShownImages, workspace: Workspace
    ) -> Message:
        p = self.profile
        text = p.first_turn.format(
            question=self.question.stem.replace(p.placeholder, ""),
            options=self.question.layout(p.option_layout, p.option_separator),
            duration=f"{self.duration_s or 0:.2f}",
            **self._image_fields(image, shown),
        )
        return Message("user", text, (shown_pixels(self.profile, workspace, image),))

    def _tool_result(
        self, image: WorkspaceImage, shown: ShownImages, workspace: Workspace, payload: Payload
    ) -> Message:
        text = self.profile.tool_result.format(**self._image_fields(image, shown))
        return Message("user", text, (shown_pixels(self.profile, workspace, image, payload),))

    def _failure(self, context: ReadContext, shown: ShownImages) -> str:
        """The trained error line for a failed call (a call without an image is one)."""
        observation = context.observation.text if context.observation else ""
        if not context.steps:
            return observation
        step = context.steps[-1]
        try:
            spec = self.profile.action_for(step.tool)
        except KeyError:
            return observation
        payload = to_trained(spec, step.arguments, shown)
        error = f"ToolError: {_trained_numbers(observation, shown)}"
        return self.profile.tool_error.format(action=spec.action, input=payload, error=error)

    @staticmethod
    def _image_fields(image: WorkspaceImage, shown: ShownImages) -> dict:
        times = image.times_s
        if image.members:
            what = f"{len(times)} frames from {times[0]:.2f} to {times[-1]:.2f} s"
        elif times:
            what = f"the frame at {times[0]:.3f} s"
        else:
            what = "an image"
        width, height = image.size
        return {
            "index": shown.trained_index(image.index),
            "width": width,
            "height": height,
            "what": what,
        }

    def newest_shown(self, workspace: Workspace) -> int:
        """The workspace index of the image the model saw last (an answer's evidence)."""
        return self.shown(len(workspace)).workspace[-1]


def _trained_numbers(text: str, shown: ShownImages) -> str:
    """Our tools' texts name workspace images `#k`; the model knows them by trained index."""

    def trained(match: re.Match) -> str:
        index = int(match[1])
        return f"{shown.trained_index(index)}" if index in shown.workspace else match[0]

    return IMAGE_NUMBER.sub(trained, text)
