"""A small sample study assembled from DICOM files that ship inside pydicom (no download)."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

SEED = "edge-agent sample study"


def write_sample_study(out_dir: Path, slices: int = 5) -> Path:
    """A CT series of `slices` copies of CT_small at successive positions, plus an MR series.

    UIDs are derived from fixed seeds, so the same folder is written every time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid(entropy_srcs=[SEED])
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for i in range(slices):
        ds = copy.deepcopy(ct)
        position = [float(v) for v in ct.ImagePositionPatient]
        position[2] += i * float(ct.SliceThickness)
        ds.ImagePositionPatient = position
        ds.SliceLocation = position[2]
        _stamp(ds, study_uid, "CT", series_number=1, instance=i + 1)
        ds.save_as(out_dir / f"CT{i + 1:03d}.dcm", enforce_file_format=True)
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    _stamp(mr, study_uid, "MR", series_number=2, instance=1)
    mr.save_as(out_dir / "MR001.dcm", enforce_file_format=True)
    return out_dir


def _stamp(ds: pydicom.Dataset, study_uid: str, series: str, series_number: int, instance: int):
    """New identity: one sample patient, one study, fresh series and instance UIDs."""
    ds.PatientName = "Sample^Demo"
    ds.PatientID = "EDGE-DEMO-0001"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[SEED, series])
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"sample {series} (pydicom {series}_small)"
    ds.InstanceNumber = instance
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[SEED, series, str(instance)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
