"""Errors raised while calling a tool. Each becomes an observation the policy reads, not a crash."""

from __future__ import annotations


class ToolError(Exception):
    """The call was well-formed but cannot be carried out (a box outside the image, no mask)."""


class ToolCallError(ToolError):
    """The call itself is wrong: an unknown tool or arguments that fail the tool's schema."""
