"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.sample import write_sample_study


@pytest.fixture
def sample_study(tmp_path: Path) -> Path:
    return write_sample_study(tmp_path / "study")
