"""STOW-RS ingest beside C-STORE: the same CT instances (512x512, 16-bit) sent to our gateway by
dcmtk storescu (C-STORE) and by dicomweb-client (STOW-RS, one request per batch), and by
dicomweb-client to Orthanc's DICOMweb plugin; in one run, same files, all durable receivers.

    .venv/bin/python benchmarks/stow.py [--count 200] [--batch 50]

Prints instances/s and MB/s per path and the ratio to our C-STORE. Not a test."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.ingest import make_instances, send
from tests.dicomweb_peers import TOKEN, orthanc_web, web_gateway


def stow(url: str, token: str, files: list[Path], batch: int) -> float:
    """Seconds to STOW `files` in requests of `batch` instances (files read inside the timing,
    as a sender reads them)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = DICOMwebClient(url, headers=headers)
    client.set_http_retry_params(retry=False)
    start = time.perf_counter()
    for first in range(0, len(files), batch):
        answer = client.store_instances([pydicom.dcmread(p) for p in files[first : first + batch]])
        if answer.get("FailedSOPSequence"):
            raise RuntimeError(f"{url} refused {len(answer.FailedSOPSequence)} instance(s)")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as scratch:
        root = Path(scratch)
        files = make_instances(root / "in", args.count)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        results = {}
        dimse, _ = web_gateway(root / "dimse", None, None, stable_after_s=3600.0, min_free_mb=64)
        try:
            results["edge-agent C-STORE"] = send(dimse.port, "EDGEAGENT", files, 1)
        finally:
            dimse.stop()
        web, port = web_gateway(root / "web", None, None, stable_after_s=3600.0, min_free_mb=64)
        try:
            url = f"http://127.0.0.1:{port}"
            results["edge-agent STOW-RS"] = stow(url, TOKEN, files, args.batch)
        finally:
            web.stop()
        orthanc = orthanc_web(root / "orthanc")
        try:
            url = f"http://127.0.0.1:{orthanc.http_port}/dicom-web"
            results["Orthanc STOW-RS"] = stow(url, "", files, args.batch)
        finally:
            orthanc.stop()
    base = results["edge-agent C-STORE"]
    print(f"{args.count} CT instances, {megabytes:.0f} MB, loopback, STOW batches of {args.batch}")
    print(f"{'path':<22}{'inst/s':>10}{'MB/s':>9}{'vs our C-STORE':>16}")
    for name, seconds in results.items():
        print(
            f"{name:<22}{args.count / seconds:>10.1f}{megabytes / seconds:>9.1f}"
            f"{base / seconds:>15.2f}x"
        )


if __name__ == "__main__":
    main()
