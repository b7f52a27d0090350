"""Errors a user can act on. The CLI turns each into a one-line message and exit code 2."""

from __future__ import annotations


class BadInput(Exception):
    """Input the user supplied (files, configuration, arguments) cannot be used as given."""


class ConfigError(BadInput):
    """The configuration file is unreadable or holds an unknown key or a wrong type."""


class NoReadableImages(BadInput):
    """Nothing in the given path is a DICOM image this build can decode."""


class TrajectoryError(BadInput):
    """A trajectory file is not one this version wrote, or is damaged."""


class ReportError(BadInput):
    """A report would state something it cannot back with evidence."""


class ModelLoadError(BadInput):
    """A model file or folder is missing, damaged, not what its manifest says, or cannot run here.

    One type for every model owner (GGUF, ONNX, TensorRT records): the CLI exits 2 with its line,
    `doctor` shows it red, the gateway fails the job permanently (retrying cannot mend a file)."""
