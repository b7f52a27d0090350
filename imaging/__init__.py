"""The floor every other package stands on: the study model (DICOM files → Study → Series →
Frame with geometry, windows and timelines) and the small kinds all layers share (bad-input
errors, records, checksums). It imports nothing from the project's other packages."""
