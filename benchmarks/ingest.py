"""Ingest speed: 300 CT instances (512x512, 16-bit) sent by dcmtk storescu to our durable listener,
dcmtk storescp and Orthanc, in one run, same files; then 4 simultaneous associations.

    .venv/bin/python benchmarks/ingest.py [--count 300]

Prints instances/s and MB/s per receiver and the ratios to storescp. Not a test."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.peers import Gateway, Orthanc, free_port, tool, wait_for

ENV = {**os.environ, "TCP_NODELAY": "1"}  # without it dcmtk waits ~40 ms per instance on loopback


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
    return paths


def send(port: int, called: str, files: list[Path], associations: int) -> float:
    """Seconds for `associations` storescu processes to send their share of `files`."""
    shares = [files[i::associations] for i in range(associations)]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                tool("storescu", "dcmtk"),
                "-aet",
                "STORESCU",
                "-aec",
                called,
                "127.0.0.1",
                str(port),
                *map(str, share),
            ],
            env=ENV,
            stderr=subprocess.PIPE,
        )
        for share in shares
    ]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {stderr.decode()[-500:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    for name, package in (("storescu", "dcmtk"), ("storescp", "dcmtk"), ("Orthanc", "orthanc")):
        tool(name, package)  # dcmtk's own, not the look-alikes an activated venv puts first
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as scratch:
        root = Path(scratch)
        files = make_instances(root / "in", args.count)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        results: dict[str, dict[int, float]] = {}
        for associations in (1, 4):
            for name, (port, called, stop) in _receivers(root / f"run{associations}").items():
                try:
                    results.setdefault(name, {})[associations] = send(
                        port, called, files, associations
                    )
                finally:
                    stop()
        _report(results, args.count, megabytes)


def _receivers(root: Path) -> dict:
    ours = Gateway(root / "edge", stable_after_s=3600.0, min_free_mb=64)
    port = free_port()
    (root / "storescp").mkdir(parents=True)
    storescp = subprocess.Popen(
        [
            tool("storescp", "dcmtk"),
            "--max-pdu",
            "131072",
            "-od",
            str(root / "storescp"),
            "-aet",
            "STORESCP",
            str(port),
        ],
        env=ENV,
        stderr=subprocess.DEVNULL,
    )
    wait_for(
        lambda: (
            subprocess.run(
                [tool("echoscu", "dcmtk"), "-aec", "STORESCP", "127.0.0.1", str(port)],
                capture_output=True,
            ).returncode
            == 0
        ),
        30,
        "storescp",
    )
    orthanc = Orthanc(root / "orthanc")
    return {
        "edge-agent (fsync)": (ours.port, "EDGEAGENT", ours.stop),
        "dcmtk storescp": (port, "STORESCP", lambda: (storescp.terminate(), storescp.wait())),
        "Orthanc": (orthanc.dicom_port, orthanc.aet, orthanc.stop),
    }


def _report(results: dict, count: int, megabytes: float) -> None:
    base = results["dcmtk storescp"]
    print(f"{count} CT instances, {megabytes:.0f} MB, loopback, TCP_NODELAY=1")
    print(f"{'receiver':<22}{'assoc':>6}{'inst/s':>10}{'MB/s':>9}{'vs storescp':>13}")
    for name, runs in results.items():
        for associations, seconds in runs.items():
            print(
                f"{name:<22}{associations:>6}{count / seconds:>10.1f}{megabytes / seconds:>9.1f}"
                f"{base[associations] / seconds:>12.2f}x"
            )


if __name__ == "__main__":
    main()
