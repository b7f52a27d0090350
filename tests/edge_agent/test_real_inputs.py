"""Reads of real-world objects whose headers are valid but unlike the sample CT's: each still
ends with its DICOM outputs, and those are valid (dciodvfy) but for what the source itself
carries."""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from edge_agent.config import Config
from edge_agent.followup import protocol_follow_up
from edge_agent.read import read_study
from edge_agent.replay import replay
from edge_agent.report.patient import refused
from tests.peers import dciodvfy_errors

OURS = ("edge_agent", "imaging", "tools", "dicom_gateway")  # loggers
ZERO_SPACING = "Error - Value is zero for value {} of attribute <Pixel Spacing>"


def _no_thickness(ds):
    ds.SliceThickness = None  # Type 2: present, empty


def _no_orientation(ds):
    ds.ImagerPixelSpacing = ["0.1", "0.1"]
    ds.PatientOrientation = ""  # Type 2C in CR: may be empty


def _japanese(ds):
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou=山田^太郎"


def _zero_spacing(ds):
    ds.PixelSpacing = ["0.000", "0.000"]


# name: (pydicom test file, change, dciodvfy errors of the SEG the source's own values explain)
INPUTS = {
    "enhanced CT": ("eCT_Supplemental.dcm", None, []),
    "enhanced MR without plane positions": ("emri_small.dcm", None, []),
    # its Pixel Spacing is 0\\0
    "CR without Imager Pixel Spacing": (
        "RG1_UNCI.dcm",
        None,
        [ZERO_SPACING.format(1), ZERO_SPACING.format(2)],
    ),
    "CR with an empty Patient Orientation": (
        "RG1_UNCI.dcm",
        _no_orientation,
        [ZERO_SPACING.format(1), ZERO_SPACING.format(2)],
    ),
    "CT with an empty Slice Thickness": (
        "CT_small.dcm",
        _no_thickness,
        [
            "Error - Missing attribute Type 1C Conditional Element=<SliceThickness> "
            "Module=<PixelMeasuresMacro>"
        ],
    ),
    "CT with a Pixel Spacing of 0": (
        "CT_small.dcm",
        _zero_spacing,
        [ZERO_SPACING.format(1), ZERO_SPACING.format(2)],
    ),
    "MR in the default character set": ("MR_small.dcm", None, []),
    "ultrasound without a Frame of Reference": ("US1_UNCI.dcm", None, []),
    "CT with a Japanese patient name": ("CT_small.dcm", _japanese, []),
}


def _study(folder: Path, name: str, change=None) -> tuple[Path, pydicom.Dataset]:
    ds = pydicom.dcmread(get_testdata_file(name))
    if change is not None:
        change(ds)
    folder.mkdir(parents=True)
    ds.save_as(folder / "image.dcm")
    return folder, ds


@pytest.mark.parametrize("kind", INPUTS)
def test_the_dicom_outputs_are_written_and_valid(kind, tmp_path):
    name, change, inherited = INPUTS[kind]
    study, source = _study(tmp_path / "study", name, change)
    result = read_study(study, tmp_path / "out", Config())
    assert result.dicom and result.dicom[0].name == "sr.dcm"
    for path in result.dicom:
        expected = inherited if path.name == "seg.dcm" else []
        assert dciodvfy_errors(path) == expected, path.name
    sr = hd.sr.srread(result.dicom[0])
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.PatientName == source.PatientName  # in UTF-8, whatever the source used
    assert sr.SpecificCharacterSet == "ISO_IR 192"


def test_a_region_on_an_image_without_spacing_is_measured_in_pixels(tmp_path):
    """0\\0 says nothing of size: the same candidates are found as with the real spacing, and
    their areas are in pixels, never 0 mm²."""
    measured = read_study(_study(tmp_path / "mm", "CT_small.dcm")[0], tmp_path / "out-mm", Config())
    unknown = read_study(
        _study(tmp_path / "zero", "CT_small.dcm", _zero_spacing)[0], tmp_path / "out-0", Config()
    )
    assert len(unknown.report["findings"]) == len(measured.report["findings"]) > 0
    for finding in unknown.report["findings"]:
        areas = [m for m in finding["measurements"] if m["name"] == "area"]
        assert areas and all(m["unit"] == "{pixel2}" and m["value"] > 0 for m in areas)
    # a follow-up in mm never takes pixels for mm
    answer = protocol_follow_up(unknown.trajectory, "Which are larger than 20 mm?").answer
    assert "No finding of this read has a long axis measured in mm." in answer
    assert "Not compared, measured in pixels (the image has no pixel spacing): finding 1:" in answer
    assert " mm;" not in answer.split("Not compared")[1]


def test_a_retired_sop_class_keeps_the_read_without_dicom_outputs(tmp_path, caplog):
    """The first Ultrasound Image Storage (retired): no SR or SEG can cite it, the reports can."""
    study, source = _study(tmp_path / "study", "color-pl.dcm")
    with caplog.at_level(logging.WARNING):
        result = read_study(study, tmp_path / "out", Config())
    assert result.dicom == ()
    assert (result.out_dir / "report.json").is_file() and (result.out_dir / "report.html").is_file()
    assert not (result.out_dir / "dicom").exists()
    assert f"has the SOP Class {source.SOPClassUID}, which the standard's" in caplog.text
    replayed = replay(result.out_dir / "trajectory.json", tmp_path / "replayed")
    assert replayed.dicom == () and "(retired or private)" in replayed.dicom_skipped


def test_an_image_without_a_sop_class_keeps_the_read_without_dicom_outputs(tmp_path, caplog):
    study, source = _study(tmp_path / "study", "CT_small.dcm", _set("SOPClassUID", None))
    with caplog.at_level(logging.WARNING):
        result = read_study(study, tmp_path / "out", Config())
    assert result.dicom == () and (result.out_dir / "report.json").is_file()
    assert f"source {source.SOPInstanceUID} has no SOP Class UID" in caplog.text


def _set(keyword: str, value):
    def change(ds):
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)

    return change


# Patient and study values PACS hold that are not what their VR allows (or are missing).
PATIENT = {
    "birth date with dots": ("PatientBirthDate", "03.02.1951"),
    "birth date of no day": ("PatientBirthDate", "19510231"),
    "sex spelt out": ("PatientSex", "Male"),
    "name of two values": ("PatientName", "Doe\\John"),
    "no Patient ID": ("PatientID", None),
}


@pytest.mark.parametrize("kind", PATIENT)
def test_every_object_names_the_patient_as_the_source_does(kind, tmp_path, caplog):
    keyword, value = PATIENT[kind]
    study, source = _study(tmp_path / "study", "CT_small.dcm", _set(keyword, value))
    with caplog.at_level(logging.DEBUG):
        result = read_study(study, tmp_path / "out", Config())
    assert {p.name for p in result.dicom} >= {"sr.dcm", "seg.dcm", "ko.dcm"}
    for path in result.dicom:
        made = pydicom.dcmread(path)
        assert made.get(keyword) == source.get(keyword, ""), path.name  # as the study has it
        assert made.StudyInstanceUID == source.StudyInstanceUID
    ours = " ".join(r.getMessage() for r in caplog.records if r.name.startswith(OURS))
    assert keyword in ours
    if value is not None:  # pydicom's and highdicom's loggers the service keeps quiet
        assert value.split("\\")[0] not in ours  # the value is the patient's


def test_a_source_without_a_referring_physician_is_taken_as_it_is():
    """highdicom reads that one with a default: nothing to empty, copy, or log."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    source.PatientSex = "Male"
    del source.ReferringPhysicianName
    assert refused(source) == ("PatientSex",)


def test_a_film_without_image_orientation_keeps_its_stated_sides(tmp_path):
    """A CR whose Patient Orientation is L\\F: its key images name their edges (R, L, H, F) and
    its captures carry that orientation, as a chest film's side marker must stay."""
    study, _ = _study(tmp_path / "study", "RG1_UNCI.dcm", _set("PatientOrientation", ["L", "F"]))
    result = read_study(study, tmp_path / "out", Config())
    shown = [image for image in result.trajectory.images if image.tool == "shown"]
    assert shown and all(image.edges == ("R", "L", "H", "F") for image in shown)
    captures = [p for p in result.dicom if p.name.startswith("sc_")]
    assert captures and all(
        list(pydicom.dcmread(path).PatientOrientation) == ["L", "F"] for path in captures
    )
