"""Prompt formats, driven by prompt profiles (profiles/*.toml): what the model is shown each turn,
the grammar of its reply, and the reply parsed into our tool call or an answer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edge_agent.formats.medscope import MedScopeFormat
from edge_agent.formats.ophiuchus import OphiuchusFormat
from edge_agent.formats.profile import Profile, ProfileError, load_profile
from edge_agent.formats.question import Question
from tools.workspace import ShownSize

if TYPE_CHECKING:
    from edge_agent.agent import ReadContext

log = logging.getLogger(__name__)

DEFAULT_PROFILES = {"image": "ophiuchus-v1", "video": "medscope-provisional"}
SYNTAX = {"action": OphiuchusFormat, "tool_call": MedScopeFormat}

__all__ = [
    "Profile",
    "ProfileError",
    "chosen_profile",
    "format_for",
    "load_profile",
    "shown_size",
]


def chosen_profile(setting: str, model_profile: str) -> Profile | None:
    """The profile a policy reads with: the configuration's (`--profile`) first, then the one
    the model folder's manifest names (the checkpoint's interface); None: each read's default."""
    name = setting or model_profile
    return load_profile(name) if name else None


def shown_size(profile: Profile | None, max_side: int = 0) -> ShownSize:
    """How large the shown images are: `max_side` when a configuration sets one, else at most
    the profile's `max_pixels` (the image reads' default profile when none is chosen), the
    size the checkpoint saw its images at in training."""
    if max_side:
        return ShownSize(max_side=max_side)
    profile = profile or load_profile(DEFAULT_PROFILES["image"])
    return ShownSize(max_pixels=profile.max_pixels)


def format_for(
    context: ReadContext, profile: Profile | None = None, think_tokens: int | None = None
) -> OphiuchusFormat | MedScopeFormat:
    """The format for a read starting now: `profile` (the model folder's, or `--profile`), else
    the default for the read (a video or cine: MedScope, provisional; images: Ophiuchus)."""
    timeline = context.workspace.timeline
    if profile is not None and timeline is not None and not _reads_video(profile):
        log.warning(
            "prompt profile %s has no video tools; this cine/video read uses %s",
            profile.name,
            DEFAULT_PROFILES["video"],
        )
        profile = None
    if profile is None:
        profile = load_profile(DEFAULT_PROFILES["video" if timeline is not None else "image"])
    return SYNTAX[profile.syntax](
        profile,
        originals=len(context.workspace),
        question=Question.parse(context.question),
        duration_s=timeline.duration_s if timeline is not None else None,
        think_tokens=think_tokens,
    )


def _reads_video(profile: Profile) -> bool:
    return any(tool.ours in ("crop_video", "get_frame") for tool in profile.tools)
