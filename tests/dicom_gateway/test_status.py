"""Our named DIMSE statuses mean what pynetdicom's PS3.4 / PS3.7 tables say they mean."""

from __future__ import annotations

from pynetdicom.status import (
    GENERAL_STATUS,
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
)

from dicom_gateway import status


def test_store_statuses_match_the_storage_service_class_table():
    assert STORAGE_SERVICE_CLASS_STATUS[status.OUT_OF_RESOURCES] == (
        "Failure",
        "Refused: Out of Resources",
    )
    assert STORAGE_SERVICE_CLASS_STATUS[status.CANNOT_UNDERSTAND] == (
        "Failure",
        "Cannot Understand",
    )
    stored = {STORAGE_SERVICE_CLASS_STATUS[code][0] for code in status.STORED}
    assert stored == {"Success", "Warning"}
    assert len(status.STORED) == 4


def test_query_retrieve_and_general_statuses_match_their_tables():
    assert GENERAL_STATUS[status.SUCCESS][0] == "Success"
    assert GENERAL_STATUS[status.PROCESSING_FAILURE] == ("Failure", "Processing Failure")
    assert QR_FIND_SERVICE_CLASS_STATUS[status.PENDING][0] == "Pending"
    assert QR_FIND_SERVICE_CLASS_STATUS[status.PENDING_WARNING] == (
        "Pending",
        "Matches are continuing, warning",
    )
    assert QR_GET_SERVICE_CLASS_STATUS[status.SUB_OPERATIONS_FAILED][0] == "Warning"
    assert "one or more failures" in QR_GET_SERVICE_CLASS_STATUS[status.SUB_OPERATIONS_FAILED][1]
