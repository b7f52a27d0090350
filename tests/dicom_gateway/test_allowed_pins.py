"""`allowed` entries pinned to an IP: checked when the settings load, and matched against the
caller's address however the socket shows it (an IPv4 caller on a dual-stack `::` listener)."""

from __future__ import annotations

import pytest

from dicom_gateway.settings import GatewaySettings
from tests.peers import Gateway, echo


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("ECHOSCU@localhost", "'localhost' is not an IP address"),
        ("PACS@10.0.0.1 ", "'10.0.0.1 ' is not an IP address"),
        ("PACS @10.0.0.1", "'PACS ' is not an AE title"),
        ("PACS@", "'' is not an IP address"),
    ],
)
def test_a_pin_that_is_not_an_ip_address_is_refused_when_the_settings_load(entry, message):
    with pytest.raises(ValueError, match=message):
        GatewaySettings(allowed=(entry,))


def test_pins_are_kept_as_the_addresses_they_name():
    settings = GatewaySettings(allowed=("A@::ffff:10.0.0.1", "B@fe80:0::1", "C"))
    assert settings.allowed_callers == {"A": "10.0.0.1", "B": "fe80::1", "C": None}


def test_a_pinned_ipv4_caller_is_let_in_on_a_dual_stack_listener(tmp_path):
    gateway = Gateway(tmp_path / "gw", bind="::", allowed=["STORESCU@127.0.0.1", "OTHER@127.0.0.2"])
    try:
        assert echo(gateway.port, "EDGEAGENT", "STORESCU") == 0  # seen as ::ffff:127.0.0.1
        assert echo(gateway.port, "EDGEAGENT", "OTHER") != 0  # its pin still holds
    finally:
        gateway.stop()
    rejected = [e for e in gateway.audit() if e["event"] == "association_rejected"]
    assert [(e["calling_ae"], e["reason"]) for e in rejected] == [
        ("OTHER", "address not allowed for AE")
    ]
