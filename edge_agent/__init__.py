"""edge-agent: a medical imaging agent that thinks with images, run on the workstation."""

from __future__ import annotations

__version__ = "0.1.0"
