"""A gateway worker whose read is a stand-in of fixed duration (for GPU time), run as its own
process: `python -m tests.gateway_node --config edge-agent.toml --read-s 1.5`.

Everything but the read is the real service (`Service(..., role="worker")`): the shared index,
the queue's leases and heartbeats, the outbox rows, SIGTERM draining. The read writes one result
per study: a copy of one of its instances in a new series, with a new SOP Instance UID per
attempt, so a result delivered twice shows as two instances in Orthanc."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dicom_gateway.reader import DEFAULT_REQUEST, ReadOutcome, ReadRequest

RESULT_SERIES_NUMBER = 999


class FixedTimeReader:
    def __init__(self, read_s: float) -> None:
        self.read_s = read_s

    def read(
        self, study_dir: Path, out_dir: Path, request: ReadRequest = DEFAULT_REQUEST
    ) -> ReadOutcome:
        time.sleep(self.read_s)
        source = pydicom.dcmread(min(study_dir.glob("*.dcm")))
        study_uid = str(source.StudyInstanceUID)
        source.SeriesInstanceUID = generate_uid(entropy_srcs=[study_uid, "stand-in result"])
        source.SeriesNumber = RESULT_SERIES_NUMBER
        source.SOPInstanceUID = generate_uid(entropy_srcs=[str(out_dir)])
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        out_dir.mkdir(parents=True, exist_ok=True)
        result = out_dir / "result.dcm"
        source.save_as(result, enforce_file_format=True)
        return ReadOutcome(study_uid, (result,), findings=0, end_reason="stand-in")

    def close(self) -> None:
        pass


def main() -> None:
    from dicom_gateway.service import Service
    from edge_agent.cli.terminal import setup

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--read-s", type=float, default=1.0)
    args = parser.parse_args()
    settings = setup(args.config, True, json_logs=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    Service(settings.gateway, lambda: FixedTimeReader(args.read_s), role="worker").run(stop)


if __name__ == "__main__":
    main()
