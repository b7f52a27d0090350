"""Prompt formats, one per model family: how tools are described and replies are written."""
