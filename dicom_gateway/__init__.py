"""DICOM gateway: listener, spool, assembler, worker and outbox (see the project's issues).

It knows a read only through `edge_agent.read.read_study()`."""
