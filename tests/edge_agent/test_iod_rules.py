"""The one use of highdicom's private module table: it is still where the SEG code reaches it,
and still says which IODs require a Frame of Reference."""

from __future__ import annotations

from pydicom.uid import (
    CTImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from edge_agent.report.iod_rules import known_iod, requires_module


def test_a_ct_requires_a_frame_of_reference_and_a_cine_or_capture_does_not():
    assert requires_module("frame-of-reference", CTImageStorage)
    assert not requires_module("frame-of-reference", UltrasoundMultiFrameImageStorage)
    assert not requires_module("frame-of-reference", SecondaryCaptureImageStorage)


def test_a_retired_sop_class_has_no_iod_in_the_tables():
    assert known_iod(CTImageStorage)
    assert not known_iod("1.2.840.10008.5.1.4.1.1.6")  # the first Ultrasound Image Storage
