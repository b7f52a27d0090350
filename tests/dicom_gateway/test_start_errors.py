"""`serve` on a machine that cannot give what its settings name ends in one line that says
which (port, address, folder, file) and exit 2: no trace, no restart loop of traces."""

from __future__ import annotations

import json
import socket

import pytest

from tests.dicom_gateway.storescp import StoreScp
from tests.peers import free_port
from tests.support import run_cli

UNASSIGNED = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never an address of this machine


def serve(tmp_path, gateway: dict, tables: str = ""):
    settings = {"spool_dir": str(tmp_path / "spool"), "port": free_port(), **gateway}
    config = tmp_path / "edge-agent.toml"
    config.write_text(
        "[gateway]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()) + tables
    )
    return run_cli("serve", "--config", config)


def one_line_exit_2(done) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("processes", [1, 2])
def test_a_port_in_use_is_named(tmp_path, processes):
    other = StoreScp(tmp_path / "other")  # a real DICOM node already on the port
    try:
        done = serve(tmp_path, {"port": other.port, "listener_processes": processes})
    finally:
        other.stop()
    line = one_line_exit_2(done)
    assert line.endswith(f"cannot listen on 127.0.0.1:{other.port}: Address already in use")


def test_a_bind_address_not_on_this_machine_is_named(tmp_path):
    done = serve(tmp_path, {"bind": UNASSIGNED})
    line = one_line_exit_2(done)
    assert f"cannot listen on {UNASSIGNED}:" in line and "Cannot assign requested address" in line


def test_a_port_out_of_range_is_refused_when_the_settings_load(tmp_path):
    line = one_line_exit_2(serve(tmp_path, {"port": 70000}))
    assert "port must be between 1 and 65535, not 70000" in line


def test_a_spool_folder_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "a-file").write_text("")
    line = one_line_exit_2(serve(tmp_path, {"spool_dir": str(tmp_path / "a-file" / "spool")}))
    assert line.endswith(f"spool_dir {tmp_path / 'a-file' / 'spool'}: Not a directory")


def test_a_missing_tls_file_is_named(tmp_path):
    (tmp_path / "key.pem").write_text("")
    missing = tmp_path / "cert.pem"
    done = serve(tmp_path, {"tls_cert": str(missing), "tls_key": str(tmp_path / "key.pem")})
    assert one_line_exit_2(done).endswith(f"tls_cert {missing}: no such readable file")


def test_tls_files_that_are_not_pem_are_named(tmp_path):
    cert, key, ca = (tmp_path / name for name in ("cert.pem", "key.pem", "ca.pem"))
    for path in (cert, key, ca):
        path.write_text("not PEM\n")
    done = serve(tmp_path, {"tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(ca)})
    assert one_line_exit_2(done).startswith(f"error: tls_cert {cert} with tls_key {key}: ")


def test_a_stow_port_in_use_is_named(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web = f'[gateway.web]\nport = {port}\n[[gateway.web.clients]]\nname = "ris"\ntoken = "t"\n'
        done = serve(tmp_path, {}, web)
    assert f"STOW-RS did not start on 127.0.0.1:{port}" in one_line_exit_2(done)
