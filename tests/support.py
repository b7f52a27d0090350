"""Helpers for tests: pydicom's bundled files, the installed CLI, synthetic phantoms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_file

from imaging.frame import Frame, Geometry, ImageRef


def bundled(name: str) -> Path:
    """A file that ships inside the pydicom wheel (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name} is not bundled with this pydicom")
    return Path(path)


def sr_items(dataset):
    """Every content item of an SR, depth first."""
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from sr_items(item)


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed `edge-agent` console script, as a user runs it."""
    script = Path(sys.executable).parent / "edge-agent"
    return subprocess.run(
        [str(script), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def pdf_text(pdf: Path, order: str = "-layout") -> str:
    """A PDF's text as poppler's pdftotext reads it: laid out as printed, or `-raw`, in the
    order it was written (a table's cells one after another)."""
    from tests.peers import tool

    return subprocess.run(
        [tool("pdftotext", "poppler-utils"), order, pdf, "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def console_script(code: str, *argv: str) -> subprocess.CompletedProcess:
    """`main()` as the console script calls it, after `code` (run first, in the same process)."""
    program = f"import sys; sys.argv = ['edge-agent', *{list(argv)!r}]\n{code}\n"
    program += "from edge_agent.cli import main\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300
    )


def phantom_frame(
    values: np.ndarray, spacing: tuple[float, float] | None = (0.5, 0.5), modality: str = "CT"
) -> Frame:
    """A synthetic grey frame whose stored values are already modality values."""
    return Frame(
        ref=ImageRef("1.2.3.4", 1, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.2", "1.2.3.1"),
        pixels=values.astype(np.int16),
        geometry=Geometry(pixel_spacing=spacing),
        modality=modality,
    )


def disc(shape, centre, radius_mm, spacing, inside, outside) -> np.ndarray:
    """A disc that is round in millimetres (elliptic in pixels when spacing is anisotropic)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    dy = (rows + 0.5 - centre[1]) * spacing[0]
    dx = (cols + 0.5 - centre[0]) * spacing[1]
    return np.where(np.hypot(dx, dy) <= radius_mm, inside, outside)


def ct_copies(folder: Path, count: int, seed: str) -> list[Path]:
    """`count` slices of one new CT study, made from pydicom's CT_small with fresh UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    study, series = generate_uid(entropy_srcs=[seed]), generate_uid(entropy_srcs=[seed, "s"])
    paths = []
    for i in range(count):
        source.StudyInstanceUID, source.SeriesInstanceUID = study, series
        source.SOPInstanceUID = generate_uid(entropy_srcs=[seed, str(i)])
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        source.InstanceNumber = i + 1
        source.ImagePositionPatient = [0.0, 0.0, float(i)]
        paths.append(folder / f"{i:04d}.dcm")
        source.save_as(paths[-1], enforce_file_format=True)
    return paths


GOOD = 3  # the good slices beside a damaged one


def study_with_damaged_file(
    folder: Path, keyword: str, vr: str, value: bytes, good: int = GOOD
) -> Path:
    """`good` copies of a CT slice, a slice apart, and one more whose `keyword` holds `value`
    as it lies in the file (Explicit VR Little Endian, with `vr`): the damaged file."""
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1", generate_uid()
    for i in range(good + 1):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber, ds.ImagePositionPatient = i + 1, [0.0, 0.0, float(i)]
        if i == good:
            ds[Tag(keyword)] = RawDataElement(Tag(keyword), vr, len(value), value, 0, False, True)
        ds.save_as(folder / f"{keyword}_{i:03d}.dcm", enforce_file_format=True)
    return folder / f"{keyword}_{good:03d}.dcm"


def with_file_meta(path: Path, **meta) -> bytes:
    """The file's bytes with its file meta naming what `meta` says (e.g. the UID a copy had
    before a script gave it a new one), the data set as it is."""
    from io import BytesIO

    import pydicom

    ds = pydicom.dcmread(path)
    for keyword, value in meta.items():
        setattr(ds.file_meta, keyword, value)
    out = BytesIO()
    ds.save_as(out)  # as it is: enforce_file_format would name the data set's own UIDs again
    return out.getvalue()


def c_store(port: int, datasets, calling: str = "STORESCU", called: str = "EDGEAGENT"):
    """Send datasets (or files) with pynetdicom; yields (SOP Instance UID, status or None)."""
    import pydicom
    from pynetdicom import AE
    from pynetdicom.presentation import build_context

    items = [pydicom.dcmread(d) if isinstance(d, Path) else d for d in datasets]
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for sop_class in dict.fromkeys(str(ds.SOPClassUID) for ds in items):
        ae.requested_contexts = [*ae.requested_contexts, build_context(sop_class)]
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise ConnectionError(f"association with port {port} failed")
    try:
        for ds in items:
            status = assoc.send_c_store(ds)
            yield str(ds.SOPInstanceUID), getattr(status, "Status", None)
    finally:
        assoc.release()


def reads_on_one_policy(study: Path, config, folder: Path, times: int = 2) -> list:
    """`times` reads of the same study on one loaded policy, as the gateway's worker keeps it."""
    from edge_agent.policies import make_policy
    from edge_agent.read import read_study

    policy = make_policy(config.policy)
    try:
        return [
            read_study(study, folder / f"read{i}", config, policy=policy).trajectory
            for i in range(times)
        ]
    finally:
        policy.close()


def decisions(trajectory) -> tuple:
    """What a policy decided in a read: every call with its outcome, and how the read ended."""
    return [(s.tool, s.arguments, s.observation) for s in trajectory.steps], trajectory.end_reason


def two_turns_with_a_zoom(policy_settings, frames, inspect=lambda session: None) -> tuple:
    """Two turns of one model session: the frames shown at 512 px, then a zoom of the first
    (a box of 200 x 160, shown at 512 x 410) as the observation. The usage of each turn and
    what `inspect` found in the session before it closed."""
    from dataclasses import replace

    from edge_agent.agent import Budget, ReadContext
    from edge_agent.policies import make_policy
    from tools.toolbox import ToolSettings, default_toolbox
    from tools.workspace import Workspace

    workspace, toolbox = Workspace(), default_toolbox(ToolSettings())
    for frame in frames:
        workspace.show(frame, max_side=512)
    policy = make_policy(policy_settings)
    try:
        context = ReadContext("Is there a lesion?", workspace, toolbox, Budget(max_new_tokens=512))
        session = policy.open(context)
        try:
            first = session.step(context).usage
            zoom = toolbox.call("zoom_in", {"index": 0, "bbox_2d": [100, 100, 300, 260]}, workspace)
            assert zoom.image is not None and not zoom.error, zoom.text
            assert zoom.image.size == (512, 410)
            second = session.step(replace(context, observation=zoom)).usage
            found = inspect(session)
        finally:
            session.close()
    finally:
        policy.close()
        toolbox.close()
    return first, second, found


def model_options(exported: Path) -> list:
    """`read`'s options for the llama-cpp policy on an `export gguf` folder."""
    return [
        "--policy",
        "llama-cpp",
        "--model",
        exported / "model-q8_0.gguf",
        "--mmproj",
        exported / "mmproj-f16.gguf",
    ]


# A SAM2 small enough for tests: the real sam2.1_hiera_t config, fewer and narrower blocks, 256 px.
TINY_SAM2 = (
    "++model.image_size=256",
    "++model.image_encoder.trunk.embed_dim=48",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[384,192,96,48]",
)


def save_random_sam2(path: Path, overrides: tuple[str, ...] = TINY_SAM2) -> list[str]:
    """A random-weight (seed 0) sam2.1_hiera_t checkpoint with `overrides`, in the format SAM2's
    own releases use; returns the `export onnx sam2` arguments that go with it."""
    import torch

    from export.sam2_model import build_sam2_model

    torch.manual_seed(0)
    torch.save({"model": build_sam2_model("sam2.1_hiera_t", None, overrides).state_dict()}, path)
    return override_args(overrides)


def override_args(overrides: tuple[str, ...] = TINY_SAM2) -> list[str]:
    """`overrides` as `export onnx sam2` takes them."""
    return [arg for value in overrides for arg in ("--override", value)]
