"""The edge-agent.toml file: the agent's tables ([read], [budget], [tools], [policy], [report])
and the gateway's ([gateway]), composed here, where the CLI puts the two together.

The agent's read takes only its own part (`edge_agent.config.Config`); a `FileConfig` is one, plus
the gateway's settings, so the library never depends on the gateway for its own read."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from dicom_gateway.settings import GatewaySettings
from edge_agent.config import Config
from imaging.errors import ConfigError
from imaging.records import RecordError, from_plain

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class FileConfig(Config):
    gateway: GatewaySettings = field(default_factory=GatewaySettings)


def load_config(path: Path | None) -> FileConfig:
    """Defaults when no file is given; otherwise the file must exist and be fully valid."""
    if path is None:
        return FileConfig()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    try:
        return from_plain(FileConfig, data, "config")
    except RecordError as exc:
        raise ConfigError(f"config {path}: {exc}") from None
