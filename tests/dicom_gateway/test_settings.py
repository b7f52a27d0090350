"""[gateway] settings that cannot mean what their key says are refused when they load, in one
line naming the key; the defaults and the bounds themselves are taken."""

from __future__ import annotations

import pytest

from dicom_gateway.settings import GatewaySettings
from tests.support import run_cli

REFUSED = [
    ({"port": 0}, "port must be between 1 and 65535"),
    ({"port": 70000}, "port must be between 1 and 65535"),
    ({"poll_s": 0.0}, "poll_s must be at least"),
    ({"stable_after_s": -5.0}, "stable_after_s must be at least"),
    ({"stable_after_s": 0.0}, "stable_after_s must be at least"),
    ({"lease_s": 0.0}, "lease_s must be at least"),
    ({"max_attempts": 0}, "max_attempts must be at least 1"),
    ({"retry_first_s": 0.0}, "retry_first_s must be at least"),
    ({"retry_first_s": 100.0, "retry_max_s": 1.0}, "retry_max_s (1.0) must be at least"),
    ({"min_free_mb": -1}, "min_free_mb must be at least 0"),
    ({"stable_after_s": float("nan")}, "stable_after_s must be a finite number"),
    ({"lease_s": float("inf")}, "lease_s must be a finite number"),
    ({"network_timeout_s": float("inf")}, "network_timeout_s must be a finite number"),
    ({"ae_title": "   "}, "ae_title '   ' is not a valid AE title"),
    ({"allowed": ("  ",)}, "is not an AE title"),
    ({"spool_dir": ""}, "spool_dir must name a folder"),
]


@pytest.mark.parametrize(("given", "message"), REFUSED, ids=[str(g) for g, _ in REFUSED])
def test_a_number_or_name_that_cannot_mean_its_key_is_refused(given, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GatewaySettings(**given)


def test_the_bounds_themselves_are_taken():
    settings = GatewaySettings(
        port=1, poll_s=0.05, stable_after_s=0.1, lease_s=1.0, max_attempts=1,
        retry_first_s=0.5, retry_max_s=0.5, min_free_mb=0,
    )  # fmt: skip
    assert (settings.port, settings.poll_s, settings.retry_max_s) == (1, 0.05, 0.5)


def test_serve_refuses_a_poll_of_zero_in_one_line(tmp_path):
    """A poll of 0 spun a core while the service was idle."""
    config = tmp_path / "edge-agent.toml"
    config.write_text(f'[gateway]\npoll_s = 0\nspool_dir = "{tmp_path / "spool"}"\n')
    done = run_cli("serve", "--config", config)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("config.gateway: poll_s must be at least 0.05, not 0.0")
    assert not (tmp_path / "spool").exists()
