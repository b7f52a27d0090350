"""Who made a derived DICOM object: required on every SR, SEG, SC and KOS we write."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from pydicom.uid import generate_uid

from edge_agent import __version__
from edge_agent.trajectory import Trajectory
from imaging.instance import OUR_MANUFACTURER
from tools.observation import model_of


@dataclass(frozen=True)
class Provenance:
    manufacturer: str
    model_name: str  # the policy, and the model file when there is one
    software_version: str
    device_uid: str  # stable per workstation, so PACS can tell devices apart
    model_file: str = ""
    model_sha256: str = ""
    statement: str = ""  # the plain disclaimer carried into every report object

    @classmethod
    def of(cls, trajectory: Trajectory) -> Provenance:
        model = trajectory.policy.model or {}
        model_file = str(model.get("file", ""))
        name = f"{trajectory.policy.name} policy" + (f" ({model_file})" if model_file else "")
        statement = (
            f"AI-generated, not a diagnosis; policy {trajectory.policy.name}, "
            f"model {model_file or 'none'}"
            + (f" (SHA-256 {model['sha256']})" if model.get("sha256") else "")
            + "".join(f"; {used}" for used in _tool_models(trajectory))
            + f". {trajectory.policy.disclaimer}"
        )
        return cls(
            manufacturer=OUR_MANUFACTURER,
            model_name=name[:64],
            software_version=__version__,
            device_uid=generate_uid(entropy_srcs=[OUR_MANUFACTURER, platform.node()]),
            model_file=model_file,
            model_sha256=str(model.get("sha256", "")),
            statement=statement,
        )

    def new_object(self, series_number: int, description: str, **overrides) -> dict:
        """highdicom keyword arguments for a new instance in a new series, with who made it."""
        return {
            "series_instance_uid": generate_uid(),
            "series_number": series_number,
            "sop_instance_uid": generate_uid(),
            "instance_number": 1,
            "manufacturer": self.manufacturer,
            "manufacturer_model_name": self.model_name,
            "software_versions": self.software_version,
            "device_serial_number": self.device_uid[-16:],
            # what a PACS lists for the series: an AI result, never taken for an acquisition
            "series_description": f"{description} (AI, not a diagnosis)",
            # UTF-8 whatever the source used: a model's answer may hold any character, and a
            # source in the default repertoire could not carry a unit such as mm².
            "specific_character_set": "ISO_IR 192",
            **overrides,
        }


def _tool_models(trajectory: Trajectory) -> list[str]:
    """Models the tools ran (a step's payload "model": file and SHA-256), each named once."""
    used = {}
    for step in trajectory.steps:
        model = model_of(step.payload)
        if model is not None and model.file:
            used[model.file] = f"{step.tool} model {model.file} (SHA-256 {model.sha256})"
    return list(used.values())
