"""What `edge-agent doctor` reports: enough for IT to tell why a workstation cannot read."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from edge_agent import __version__

PACKAGES = (
    "pydicom",
    "numpy",
    "opencv-python-headless",
    "pylibjpeg",
    "python-gdcm",
    "llama-cpp-python",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",
)


def checks(out_dir: Path) -> Iterator[tuple[str, str]]:
    yield "edge-agent", __version__
    yield "python", f"{sys.version.split()[0]} ({sys.executable})"
    yield "platform", f"{platform.platform()}; {os.cpu_count()} CPU(s)"
    for package in PACKAGES:
        yield package, _version(package)
    yield "pixel decoders", _decoders()
    yield "onnxruntime providers", _providers()
    yield "NVIDIA GPU", _gpu()
    yield "free disk", _free_disk(out_dir)
    yield "policies", "protocol (embedded, no model)"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _decoders() -> str:
    from pydicom.pixels.decoders import base

    available = []
    for name, syntax in (
        ("JPEG baseline", "1.2.840.10008.1.2.4.50"),
        ("JPEG lossless", "1.2.840.10008.1.2.4.70"),
        ("JPEG 2000", "1.2.840.10008.1.2.4.90"),
        ("JPEG-LS", "1.2.840.10008.1.2.4.80"),
        ("RLE", "1.2.840.10008.1.2.5"),
        ("deflate", "1.2.840.10008.1.2.1.99"),
    ):
        decoder = base.get_decoder(syntax)
        ok = decoder.is_available if decoder else False
        available.append(f"{name} {'yes' if ok else 'NO'}")
    return ", ".join(available)


def _providers() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime not installed"
    return ", ".join(onnxruntime.get_available_providers())


def _gpu() -> str:
    if shutil.which("nvidia-smi") is None:
        return "none found (nvidia-smi absent); CPU back ends only"
    return "nvidia-smi present"


def _free_disk(path: Path) -> str:
    target = path if path.exists() else Path(".")
    usage = shutil.disk_usage(target)
    return (
        f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB at {target.resolve()}"
    )
