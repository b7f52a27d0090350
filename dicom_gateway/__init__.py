"""DICOM gateway: listener, spool, assembler, worker and outbox (see the project's issues).

It knows a read only through the small `Reader` protocol in `dicom_gateway/reader.py`, and imports
nothing from `edge_agent` or `tools`; the CLI composes the two."""
