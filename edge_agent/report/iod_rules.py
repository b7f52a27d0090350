"""What the DICOM standard requires of an IOD's modules, from the table highdicom's Segmentation
itself applies. highdicom keeps that table private (it is pinned to 0.28): this module is the one
place that reaches into it, and tests/edge_agent/test_iod_rules.py fails when highdicom moves it."""

from __future__ import annotations

from highdicom._standard_utils import ModuleUsageValues, get_module_usage, get_sop_class_iod_map


def known_iod(sop_class_uid: str) -> bool:
    """Whether the standard's current tables have an IOD for `sop_class_uid`: a retired SOP
    Class (the first Ultrasound Image Storage, say) has none, and highdicom references only
    instances of a class it finds there."""
    return sop_class_uid in get_sop_class_iod_map()


def requires_module(module: str, sop_class_uid: str) -> bool:
    """Whether the IOD of `sop_class_uid` makes `module` (e.g. "frame-of-reference") mandatory;
    `sop_class_uid` is one `known_iod` knows."""
    return get_module_usage(module, sop_class_uid) == ModuleUsageValues.MANDATORY
