"""Prompt formats, one per model family: how tools are described and replies are written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.formats.medscope import MedScopeFormat
from edge_agent.formats.ophiuchus import OphiuchusFormat

if TYPE_CHECKING:
    from edge_agent.agent import ReadContext


def format_for(context: ReadContext, max_think_chars: int) -> OphiuchusFormat | MedScopeFormat:
    """MedScope (tools in seconds) for a cine or video read, Ophiuchus for images."""
    timeline = context.workspace.timeline
    if timeline is not None:
        return MedScopeFormat(context.toolbox, timeline.duration_s, max_think_chars)
    return OphiuchusFormat(context.toolbox, max_think_chars)
