"""DIMSE status codes the gateway answers with or acts on, named with their PS3.4 / PS3.7 meaning.

pynetdicom's `Status` names only success, cancel, pending and "move destination unknown"; the
others are written here once, and `tests/dicom_gateway/test_status.py` checks each against
pynetdicom's own per-service tables."""

from __future__ import annotations

from pynetdicom.status import Status

SUCCESS = int(Status.SUCCESS)  # 0x0000
PENDING = int(Status.PENDING)  # 0xFF00: matches / sub-operations are continuing
# C-FIND pending: a match, but an optional key the SCP does not support (PS3.4 C.4.1.1.4).
PENDING_WARNING = 0xFF01
# General failure (PS3.7 C.4.2): our own fault, not the sender's.
PROCESSING_FAILURE = 0x0110

# C-STORE (PS3.4 B.2.3): failures, and the warnings under which the instance was still stored.
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources
CANNOT_UNDERSTAND = 0xC000  # Error: Cannot Understand
DATA_SET_MISMATCH = 0xA900  # Error: Data Set does not match SOP Class
COERCION_OF_DATA_ELEMENTS = 0xB000  # Warning: stored, some elements coerced
ELEMENT_DISCARDED = 0xB006  # Warning: stored, some elements discarded
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xB007  # Warning: stored, but not what the SOP class says
STORED = frozenset(
    {SUCCESS, COERCION_OF_DATA_ELEMENTS, ELEMENT_DISCARDED, DATA_SET_DOES_NOT_MATCH_SOP_CLASS}
)

# C-GET (PS3.4 C.4.3.1.4): the sub-operations ended, but one or more failed.
SUB_OPERATIONS_FAILED = 0xB000
