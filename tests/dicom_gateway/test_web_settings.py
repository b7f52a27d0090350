"""The [gateway.web] table and dicomweb+ destinations: what a site may write, and what is refused
when the configuration is read (not at the first request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_gateway.web_settings import TokenError, WebClient, WebPeer, WebServer
from edge_agent.cli.config import load_config
from imaging.errors import ConfigError


def _load(tmp_path: Path, text: str):
    (tmp_path / "edge-agent.toml").write_text(text)
    return load_config(tmp_path / "edge-agent.toml").gateway


def test_destinations_may_be_dicom_or_dicomweb(tmp_path):
    gateway = _load(
        tmp_path,
        '[gateway]\ndestinations = ["PACS@10.0.0.5:104", '
        '"dicomweb+https://pacs.example.org/dicom-web/", "dicomweb+http://127.0.0.1:8042/dw"]\n',
    )
    dimse, secure, loopback = gateway.peers
    assert str(dimse) == "PACS@10.0.0.5:104"
    assert secure == WebPeer("https://pacs.example.org/dicom-web")
    assert str(loopback) == "dicomweb+http://127.0.0.1:8042/dw"


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        (
            '[gateway]\ndestinations = ["dicomweb+http://pacs.example.org/dw"]',
            "plain http is allowed to loopback only",
        ),
        (
            '[gateway]\ndestinations = ["dicomweb+https://u:p@pacs/dw"]',
            "no query, fragment or user",
        ),
        (
            '[gateway.web]\nport = 8443\nbind = "0.0.0.0"\n[[gateway.web.clients]]\nname = "a"\n'
            'token = "t"',
            "not loopback: set tls_cert and tls_key",
        ),
        ("[gateway.web]\nport = 8443", "no [[gateway.web.clients]] may post"),
        ('[[gateway.web.clients]]\nname = "a"\ntoken = "t"\ntoken_file = "/x"', "exactly one"),
        ('[[gateway.web.clients]]\nname = "a b"\ntoken = "t"', "client name 'a b'"),
        ('[[gateway.web.servers]]\nurl = "https://pacs/dw"', "is not dicomweb+https://"),
    ],
)
def test_unsafe_or_broken_web_settings_are_refused_at_load(tmp_path, toml, says):
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, toml + "\n")
    assert says in str(refused.value)


def test_tokens_come_from_files_and_a_missing_file_is_a_config_error(tmp_path):
    (tmp_path / "pacs.token").write_text("s3cret\n")
    server = WebServer("dicomweb+https://pacs/dw", token_file=str(tmp_path / "pacs.token"))
    assert server.secret() == "s3cret"
    assert WebServer("dicomweb+https://pacs/dw").secret() == ""  # a server that asks for none
    with pytest.raises(TokenError, match="cannot read token_file"):
        WebClient("orthanc", token_file=str(tmp_path / "missing")).secret()
    assert issubclass(TokenError, ConfigError)  # `serve` stops with exit 2, one line


def test_the_configured_server_for_a_url_carries_its_token(tmp_path):
    gateway = _load(
        tmp_path,
        '[gateway]\ndestinations = ["dicomweb+https://pacs/dw"]\n'
        '[[gateway.web.servers]]\nurl = "dicomweb+https://pacs/dw/"\ntoken = "abc"\n',
    )
    [peer] = gateway.peers
    assert gateway.web.server(peer).secret() == "abc"
    assert gateway.web.server(WebPeer.parse("dicomweb+https://other/dw")).secret() == ""
