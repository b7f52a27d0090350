from __future__ import annotations

from pathlib import Path

import pytest

from dicom_gateway.settings import GatewaySettings
from edge_agent.cli.config import FileConfig, load_config
from edge_agent.config import Config
from imaging.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "edge-agent.example.toml"


def test_the_example_file_states_the_defaults():
    assert load_config(EXAMPLE) == FileConfig()


def test_the_file_is_the_agents_config_plus_the_gateway_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[read]\nkey_frames = 2\n[gateway]\nae_title = 'READER'\nport = 104\n")
    config = load_config(path)
    assert isinstance(config, Config)  # what read_study takes, as it is
    assert config.read.key_frames == 2
    assert config.gateway == GatewaySettings(ae_title="READER", port=104)


def test_nested_values_are_typed(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[tools.locate]\nmin_area_mm2 = 5\n[read]\nmodalities = ['MR']\n")
    config = load_config(path)
    assert config.tools.locate.min_area_mm2 == 5.0 and config.read.modalities == ("MR",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[read]\nkey_frames = 0\n", "key_frames >= 1"),
        ("[read]\nmodalities = 'CT'\n", "config.read.modalities: expected a list"),
        ("[nope]\n", "unknown key(s) nope"),
        ("[gateway]\nport = 'x'\n", "config.gateway.port"),
        ("[budget\n", "not valid TOML"),
    ],
)
def test_bad_values_are_refused_with_their_path(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_a_missing_file_is_an_error_not_the_defaults(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")
