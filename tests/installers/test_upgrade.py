"""An upgrade under systemd keeps a running release unless the new one is ready.

install.sh is the shipped template with only its two systemd folders pointed into scratch;
`systemctl` is a stub that logs its calls and calls the service active once its unit is
installed (and `id -u` says root, so the run need not be root); each bundle's release is
provisioned as `pip --no-index` leaves it (its console script, its models), so no wheels are
built. `doctor` and everything it checks are real."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import installers
from imaging.model_folder import ModelFolder
from tests.installers.bundles import rewrite_checksums
from tests.peers import free_port

TEMPLATES = Path(installers.__file__).parent / "templates"
SYSTEMD = ("/run/systemd/system", "/etc/systemd/system")


@dataclass(frozen=True)
class Host:
    """The scratch machine: where systemd's folders are, and the log of systemctl calls."""

    root: Path

    @property
    def calls(self) -> list[str]:
        log = self.root / "systemctl.log"
        return log.read_text().splitlines() if log.is_file() else []

    def folder(self, system_path: str) -> Path:
        return self.root / system_path.strip("/").replace("/", "-")


def host(tmp_path: Path) -> Host:
    machine = Host(tmp_path / "host")
    stubs = machine.root / "bin"
    stubs.mkdir(parents=True)
    for path in SYSTEMD:
        machine.folder(path).mkdir()
    unit = machine.folder("/etc/systemd/system") / "edge-agent.service"
    (stubs / "systemctl").write_text(  # the service is active once its unit is installed
        f'#!/bin/sh\necho "$*" >> {machine.root}/systemctl.log\n'
        f'[ "$1" != is-active ] || [ -f {unit} ]\n'
    )
    real_id = shutil.which("id")
    (stubs / "id").write_text(f'#!/bin/sh\n[ "$1" = -u ] && echo 0 || exec {real_id} "$@"\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    return machine


def bundle(machine: Host, into: Path, config: str, model: bytes, prefix: Path) -> Path:
    """A bundle whose release is already provisioned under `prefix`, with one model folder."""
    root = into / "edge-agent-0.1.0"
    (root / "wheels").mkdir(parents=True)
    (root / "config").mkdir()
    script = (TEMPLATES / "install.sh").read_text()
    for path in SYSTEMD:
        assert path in script
        script = script.replace(path, str(machine.folder(path)))
    (root / "install.sh").write_text(script)
    for name in ("uninstall.sh", "edge-agent.service"):
        shutil.copy(TEMPLATES / name, root / name)
    (root / "VERSION").write_text("0.1.0\n")
    (root / "EXTRAS").write_text("")
    (root / "config" / "edge-agent.toml").write_text(config)
    (root / "wheels" / "marker.txt").write_text(str(into))  # each bundle its own release
    rewrite_checksums(root)
    digest = hashlib.sha256((root / "SHA256SUMS").read_bytes()).hexdigest()
    release = prefix / "releases" / f"0.1.0-{digest[:12]}"
    (release / "venv" / "bin").mkdir(parents=True)
    (release / "venv" / "bin" / "edge-agent").symlink_to(Path(sys.executable).parent / "edge-agent")
    models = release / "models" / "tiny"
    models.mkdir(parents=True)
    (models / "graph.onnx").write_bytes(b"graph")
    ModelFolder.write(models, format="edge-agent locate onnx 1", roles={"graph.onnx": "model"})
    (models / "graph.onnx").write_bytes(model)  # b"graph": as exported; anything else: damaged
    (release / ".installed").touch()
    return root


def install(machine: Host, root: Path, prefix: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{machine.root / 'bin'}:{os.environ['PATH']}", COLUMNS="400")
    return subprocess.run(
        ["sh", root / "install.sh", "--prefix", prefix, "--user", _user()],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def test_an_upgrade_whose_doctor_is_red_leaves_the_running_release_current_and_running(tmp_path):
    machine, prefix = host(tmp_path), tmp_path / "prefix"
    config = f'[gateway]\nbind = "127.0.0.1"\nport = {free_port()}\n'
    good = bundle(machine, tmp_path / "a", config, b"graph", prefix)
    done = install(machine, good, prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    release_a = (prefix / "current").resolve()
    assert machine.calls[-1] == "restart edge-agent.service"
    unit = machine.folder("/etc/systemd/system") / "edge-agent.service"
    assert f"ExecStart={prefix}/current/venv/bin/edge-agent serve" in unit.read_text()

    damaged = bundle(machine, tmp_path / "b", config, b"graph, changed", prefix)
    before = len(machine.calls)
    done = install(machine, damaged, prefix)
    assert done.returncode == 1
    [red] = [line for line in done.stdout.splitlines() if "│ model tiny" in line]
    assert "FAIL" in red and "graph.onnx size differs" in red
    assert f"{release_a.name} stays current and running" in done.stderr
    assert (prefix / "current").resolve() == release_a and not (prefix / "previous").exists()
    assert machine.calls[before:] == [
        "is-active --quiet edge-agent.service",
        "stop edge-agent.service",
        "start edge-agent.service",
    ]

    fixed = bundle(machine, tmp_path / "c", config, b"graph", prefix)
    done = install(machine, fixed, prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (prefix / "current").resolve().name != release_a.name
    assert (prefix / "previous").resolve() == release_a
    assert machine.calls[-1] == "restart edge-agent.service"


def test_a_first_install_whose_doctor_is_red_makes_nothing_current(tmp_path):
    machine, prefix = host(tmp_path), tmp_path / "prefix"
    config = f'[gateway]\nbind = "127.0.0.1"\nport = {free_port()}\n'
    damaged = bundle(machine, tmp_path / "a", config, b"graph, changed", prefix)
    done = install(machine, damaged, prefix)
    assert done.returncode == 1 and "nothing is current yet" in done.stderr
    assert not (prefix / "current").exists()
    assert not (machine.folder("/etc/systemd/system") / "edge-agent.service").exists()
    assert machine.calls == ["is-active --quiet edge-agent.service", "stop edge-agent.service"]
