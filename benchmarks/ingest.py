"""Ingest speed: CT instances (512x512, 16-bit) sent by dcmtk storescu to our durable listener,
dcmtk storescp (which never fsyncs) and Orthanc, at 1 and 4 associations.

    .venv/bin/python benchmarks/ingest.py [--count 300] [--rounds 3] [--processes 1 2]
        [--baseline ../main] [--growth BATCHES]

Every peer runs with TCP_NODELAY (dcmtk and Orthanc's DICOM side read the TCP_NODELAY variable;
our listener sets it on every connection). Rounds are interleaved (each round runs every
receiver once per association count, each on a fresh store) so that a machine shared with other
work loads every receiver alike; ratios are throughput ratios per round, shown min/median/max
(with --baseline, this checkout's listener against the baseline's too).
The per-instance budget is storescp's time per instance: what ours must fit in to keep up,
beside what durability alone (write, fsync, rename, folder fsync) costs on this disk. Their sum
is the floor at 1 association, the physical bound for any receiver that acknowledges only what
is durable; ours is shown as a ratio to it (ours/floor, per round).

--growth BATCHES measures one study growing instead (a 1000-slice CT is one study): BATCHES x
--count new instances of one study, a batch at a time over one association, into one running
listener each (ours, and the baseline's beside it, batches interleaved): ms an instance and the
listener's CPU ms an instance (its extra listener processes included), batch by batch; neither
may grow with the study. Not a test."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.spread import spread
from imaging.atomic import fsync_dir
from tests.peers import Gateway, Orthanc, free_port, tool, wait_for

# Without it dcmtk (storescu, storescp, and Orthanc's DICOM server, built on dcmtk) leaves
# Nagle's algorithm on and waits for delayed ACKs, ~40 ms per instance on loopback.
os.environ["TCP_NODELAY"] = "1"
ASSOCIATIONS = (1, 4)
CHECKOUT = Path(__file__).resolve().parents[1]


def make_instances(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rng = np.random.default_rng(0)
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(count):
        ds = template.copy()
        ds.Rows = ds.Columns = 512
        ds.PixelData = rng.integers(0, 2000, (512, 512), dtype=np.int16).tobytes()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        paths.append(folder / f"{i:04d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    # On the disk now: left dirty, the kernel writes them back ~30 s later, in the middle of a
    # measured run, and every receiver's fsyncs wait behind that.
    os.sync()
    return paths


def send(port: int, called: str, files: list[Path], associations: int) -> float:
    """Seconds for `associations` storescu processes to send their share of `files`."""
    shares = [files[i::associations] for i in range(associations)]
    command = [tool("storescu", "dcmtk"), "-aet", "STORESCU", "-aec", called, "127.0.0.1"]
    command.append(str(port))
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*command, *map(str, share)],
            stderr=subprocess.PIPE,
        )
        for share in shares
    ]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {stderr.decode()[-500:]}")
    return time.perf_counter() - start


class StoreSCP:
    """dcmtk's storescp writing every instance to a folder (no fsync)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.port = free_port()
        command = [tool("storescp", "dcmtk"), "--max-pdu", "131072", "-od", str(folder)]
        self._process = subprocess.Popen(
            [*command, "-aet", "STORESCP", str(self.port)],
            stderr=subprocess.DEVNULL,
        )
        echo = [tool("echoscu", "dcmtk"), "-aec", "STORESCP", "127.0.0.1", str(self.port)]
        wait_for(lambda: subprocess.run(echo, capture_output=True).returncode == 0, 30, "storescp")

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()


GATEWAY = {
    "stable_after_s": 3600.0,
    "min_free_mb": 64,
    "max_pdu": 131072,  # what storescp is given: storescu never sends larger PDUs
}


def _gateway(folder: Path, gateway: tuple[str, dict]) -> Gateway:
    """Our listener started in `folder`; `gateway`: the checkout its process imports from and
    its settings beyond GATEWAY."""
    checkout, settings = gateway
    with mock.patch.dict(os.environ, {"PYTHONPATH": checkout}):
        return Gateway(folder, verbose=False, **GATEWAY, **settings)  # as the service unit runs


def _start(name: str, folder: Path, gateway: tuple[str, dict] | None):
    """A fresh receiver: (port, called AE title, stop). `gateway`: for our listener, as
    _gateway takes it."""
    if gateway is None and name == "storescp":
        scp = StoreSCP(folder)
        return scp.port, "STORESCP", scp.stop
    if gateway is None:
        orthanc = Orthanc(folder)
        return orthanc.dicom_port, orthanc.aet, orthanc.stop
    ours = _gateway(folder, gateway)
    return ours.port, "EDGEAGENT", ours.stop


def durable_write_ms(folder: Path, size: int, times: int = 30) -> float:
    """Median ms to make one instance durable on this disk: write, fsync, rename, folder fsync."""
    folder.mkdir(parents=True, exist_ok=True)
    data, spent = os.urandom(size), []
    for i in range(times):
        started = time.perf_counter()
        temporary = folder / f"{i}.part"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, folder / f"{i}.dcm")
        fsync_dir(folder)
        spent.append(time.perf_counter() - started)
    return 1e3 * statistics.median(spent)


def _cpu_s(pid: int) -> float:
    """CPU seconds a process and every process under it used so far, user and system (Linux
    /proc): `serve` starts its extra listener processes as children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    # Each thread lists the children it started; the listener processes live as long as serve.
    children = {
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    }
    return own + sum(_cpu_s(child) for child in children)


def growth(root: Path, count: int, batches: int, ours: dict[str, tuple[str, dict]]) -> None:
    """One study growing by `count` new instances a batch, in each of our listeners."""
    files = make_instances(root / "in", count * batches)  # one study, all new instances
    started = {}
    try:
        for name, gateway in ours.items():
            started[name] = _gateway(root / name.replace(" ", "-"), gateway)
        print(f"one study growing by {count} new CT instances a batch, 1 association")
        print(
            f"{'receiver':<28}{'batch':>6}{'in study':>10}{'ms/instance':>13}"
            f"{'CPU ms/instance':>17}"
        )
        for batch in range(batches):
            share = files[batch * count : (batch + 1) * count]
            for name, gateway in started.items():
                cpu = _cpu_s(gateway.pid)
                seconds = send(gateway.port, "EDGEAGENT", share, 1)
                cpu = _cpu_s(gateway.pid) - cpu
                stored = (batch + 1) * count
                print(
                    f"{name:<28}{batch + 1:>6}{stored:>10}"
                    f"{1e3 * seconds / count:>13.2f}{1e3 * cpu / count:>17.2f}"
                )
    finally:
        for gateway in started.values():
            gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1], help="listener_processes to measure"
    )
    parser.add_argument(
        "--baseline", help="another checkout whose gateway runs beside (e.g. the main branch)"
    )
    parser.add_argument(
        "--growth", type=int, metavar="BATCHES", help="measure one study growing instead"
    )
    args = parser.parse_args()
    for name, package in (("storescu", "dcmtk"), ("storescp", "dcmtk"), ("Orthanc", "orthanc")):
        tool(name, package)  # dcmtk's own, not the look-alikes an activated venv puts first
    # This checkout's gateway (whichever the virtual environment was installed from), then
    # another checkout's, as it was.
    ours = {f"edge-agent {n}p": (str(CHECKOUT), {"listener_processes": n}) for n in args.processes}
    baseline = f"baseline {args.baseline}" if args.baseline else None
    if baseline:
        ours[baseline] = (args.baseline, {})
    receivers = {**ours, "storescp": None, "Orthanc": None}
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as scratch:
        root = Path(scratch)
        if args.growth:
            growth(root, args.count, args.growth, ours)
            return
        files = make_instances(root / "in", args.count)
        seconds: dict[tuple[str, int], list[float]] = defaultdict(list)
        durable: list[float] = []
        for round_ in range(args.rounds):
            for associations in ASSOCIATIONS:
                for name, gateway in receivers.items():
                    folder = root / f"r{round_}-{associations}-{name.replace(' ', '-')}"
                    port, called, stop = _start(name, folder, gateway)
                    try:
                        seconds[name, associations].append(send(port, called, files, associations))
                    finally:
                        stop()
            durable.append(durable_write_ms(root / f"durable{round_}", files[0].stat().st_size))
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        _report(seconds, list(ours), args.count, megabytes, durable, baseline)


def _report(
    seconds: dict[tuple[str, int], list[float]],
    ours: list[str],
    count: int,
    megabytes: float,
    durable: list[float],
    baseline: str | None,
) -> None:
    """`durable`: ms to make one instance durable on this disk, measured in each round;
    `baseline`: the name of another checkout's listener among `ours`, if one was measured."""
    rounds = len(seconds[ours[0], 1])
    print(f"{count} CT instances, {megabytes:.0f} MB, loopback, TCP_NODELAY everywhere, ", end="")
    print(f"{rounds} interleaved rounds; min/median/max over rounds")
    width = max(len(name) for name, _ in seconds) + 2
    print(f"{'receiver':<{width}}{'assoc':>6}{'inst/s':>26}{'ms/instance':>20}")
    for (name, associations), runs in seconds.items():
        rates = [count / s for s in runs]
        per_instance = [1e3 * s / count for s in runs]
        print(f"{name:<{width}}{associations:>6}{spread(rates):>26}{spread(per_instance):>20}")
    # This checkout's listener against the baseline's too, round by round.
    pairs = [
        (name, peer)
        for name in ours
        for peer in ("storescp", "Orthanc", *([baseline] if baseline not in (None, name) else []))
    ]
    width = max(len(f"{name} / {peer}") for name, peer in pairs) + 2
    print(f"\n{'ratio (throughput)':<{width}}{'assoc':>6}{'min/median/max':>20}")
    for name, peer in pairs:
        for associations in ASSOCIATIONS:
            ratios = [
                theirs / mine
                for mine, theirs in zip(
                    seconds[name, associations], seconds[peer, associations], strict=True
                )
            ]
            label = f"{name} / {peer}"
            print(f"{label:<{width}}{associations:>6}{spread(ratios):>20}")
    budget = 1e3 * statistics.median(seconds["storescp", 1]) / count
    print(f"\nper-instance budget at 1 association (storescp's time): {budget:.2f} ms")
    print(
        "durability alone on this disk (write+fsync+rename+dir fsync): "
        f"{statistics.median(durable):.2f} ms"
    )
    # No durable receiver can do better than storescp (which never fsyncs) plus what durability
    # alone costs on this disk: each round's own two, so a slow round is compared with itself.
    floors = [1e3 * s / count + d for s, d in zip(seconds["storescp", 1], durable, strict=True)]
    print(f"floor at 1 association (storescp's time + durability alone): {spread(floors)} ms")
    for name in ours:
        mine = [1e3 * s / count for s in seconds[name, 1]]
        above = [m / f for m, f in zip(mine, floors, strict=True)]
        print(
            f"{name} at 1 association: {statistics.median(mine):.2f} ms an instance, "
            f"{spread(above)} x the floor (ours/floor)"
        )


if __name__ == "__main__":
    main()
