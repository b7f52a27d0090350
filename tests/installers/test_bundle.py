"""The air-gapped bundle, installed inside a network namespace with no network at all."""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest

from edge_agent.sample import write_sample_study
from tests.installers.bundles import rewrite_checksums
from tests.peers import free_port, tool, wait_for
from tests.support import run_cli

# Run first inside the namespace: the command starts only if the loopback is the one interface
# there (/proc/net/dev is per network namespace), so no test passes on a network it was not meant
# to have, and an unshare that fails is a failed command, never a quiet pass.
ONLY_LOOPBACK = (
    'test "$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " ")" = lo '
    '|| { echo "offline: the namespace has a network interface besides lo" >&2; exit 97; }; '
    'exec "$@"'
)
# From inside: the interfaces, then a connection to a literal address (TEST-NET-1, no DNS
# involved). With no route at all it fails at once with ENETUNREACH; on a real network it would
# time out or connect instead.
PROBE = """
import errno, socket
print(*[name for _, name in socket.if_nameindex()])
try:
    socket.create_connection(("192.0.2.1", 443), 3)
except OSError as exc:
    print("unreachable" if exc.errno == errno.ENETUNREACH else f"other:{exc!r}")
else:
    print("connected")
"""


def offline(*command, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run in a new network namespace: only a loopback that is down, no route anywhere.

    Without PYTHONPATH, as on a workstation: a source tree on it would make pip take the project
    as installed already (its egg-info) and the installed command import the tree, not itself."""
    return subprocess.run(
        [tool("unshare", "util-linux"), "-n", "sh", "-c", ONLY_LOOPBACK, "offline"]
        + [str(part) for part in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
    )


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    private, public = folder / "sign.pem", folder / "sign.pub"
    openssl = tool("openssl", "openssl")
    subprocess.run([openssl, "genpkey", "-algorithm", "ed25519", "-out", private], check=True)
    subprocess.run([openssl, "pkey", "-in", private, "-pubout", "-out", public], check=True)
    return private, public


@pytest.fixture(scope="session")
def bundle(exported, keys, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "edge-agent.tar"
    done = run_cli("bundle", "--out", out, "--extras", "", "--models", exported, "--sign", keys[0])
    assert done.returncode == 0, done.stderr
    return out


def unpack(bundle: Path, into: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(into, filter="data")
    [root] = into.iterdir()
    return root


def install(root: Path, prefix: Path, *extra) -> subprocess.CompletedProcess:
    return offline("sh", root / "install.sh", "--prefix", prefix, "--no-service", *extra)


def test_no_network_inside_the_namespace():
    probe = offline("python3", "-c", PROBE)
    assert probe.returncode == 0, probe.stderr  # unshare itself worked, and so did the probe
    assert probe.stdout.split() == ["lo", "unreachable"]


def test_the_bundle_installs_offline_and_reads(bundle, keys, tmp_path):
    root = unpack(bundle, tmp_path / "unpacked")
    for name in (
        "install.sh",
        "uninstall.sh",
        "edge-agent.service",
        "sbom.json",
        "SHA256SUMS",
        "SHA256SUMS.sig",
    ):
        assert (root / name).is_file(), name
    done = install(root, tmp_path / "prefix", "--verify-key", keys[1])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ready" in done.stdout and "model out" in done.stdout  # doctor ran, green
    study = write_sample_study(tmp_path / "study")
    edge_agent = tmp_path / "prefix" / "current" / "venv" / "bin" / "edge-agent"
    read = offline(edge_agent, "read", study, "--out", tmp_path / "result")
    assert read.returncode == 0, read.stderr
    assert (tmp_path / "result" / "dicom" / "sr.dcm").is_file()
    # the gateway as install.sh says to run it without systemd spools where doctor checked
    [command] = [line.strip() for line in done.stdout.splitlines() if " serve --config " in line]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = tmp_path / "prefix" / "etc" / "edge-agent.toml"
    config.write_text(config.read_text().replace("port = 11112", f"port = {free_port()}"))
    gateway = subprocess.Popen(["sh", "-c", command], cwd=elsewhere, start_new_session=True)
    try:
        spool = tmp_path / "prefix" / "var" / "edge-agent-spool"
        wait_for(lambda: (spool / "index.sqlite").is_file(), 120, "the spool in PREFIX/var")
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(timeout=60)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("victim", ["wheels", "models"])
def test_one_changed_byte_is_refused_before_anything_is_installed(bundle, tmp_path, victim):
    root = unpack(bundle, tmp_path / "unpacked")
    target = sorted(p for p in (root / victim).rglob("*") if p.is_file())[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    done = install(root, tmp_path / "prefix")
    assert done.returncode != 0 and "bundle damaged" in done.stderr
    assert not (tmp_path / "prefix").exists()


def test_a_forged_checksum_list_fails_the_signature(bundle, keys, tmp_path):
    root = unpack(bundle, tmp_path / "unpacked")
    (root / "config" / "edge-agent.toml").write_text("# forged\n")
    rewrite_checksums(root)  # consistent hashes, but not what was signed
    done = install(root, tmp_path / "prefix", "--verify-key", keys[1])
    assert done.returncode != 0 and "signature" in done.stderr
    assert not (tmp_path / "prefix").exists()


def test_upgrade_then_rollback_keeps_a_working_current(bundle, tmp_path):
    prefix = tmp_path / "prefix"
    first = unpack(bundle, tmp_path / "one")
    assert install(first, prefix).returncode == 0
    release_one = (prefix / "current").resolve()
    second = unpack(bundle, tmp_path / "two")  # a rebuilt bundle: new config template
    (second / "config" / "edge-agent.toml").write_text("[read]\nkey_frames = 1\n")
    rewrite_checksums(second)
    (second / "SHA256SUMS.sig").unlink()
    assert install(second, prefix).returncode == 0
    release_two = (prefix / "current").resolve()
    assert release_two != release_one and (prefix / "previous").resolve() == release_one
    assert install(second, prefix).returncode == 0  # idempotent
    assert (prefix / "current").resolve() == release_two
    assert install(second, prefix, "--rollback").returncode == 0
    assert (prefix / "current").resolve() == release_one
    version = offline(prefix / "current" / "venv" / "bin" / "edge-agent", "--version")
    assert version.returncode == 0 and "edge-agent 0.1.0" in version.stdout
