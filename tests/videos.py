"""Synthetic clinical video built in the tests: H.264 frames that carry their own index (drawn
as bit blocks) and an event, a bright disc on frames EVENT, wrapped into DICOM Video objects."""

from __future__ import annotations

import io
from fractions import Fraction

import cv2
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

FPS, FRAMES, GOP, SIDE = 30, 90, 12, 128
BITS = 8  # the frame index, drawn as 8 black/white blocks across the top
EVENT = range(45, 60)  # frames (0-based) showing the disc: 1.5 s to 2.0 s


def draw(index: int) -> np.ndarray:
    image = np.full((SIDE, SIDE, 3), 60, np.uint8)
    if index in EVENT:
        cv2.circle(image, (SIDE // 2, SIDE // 2 + 16), 40, (250, 250, 250), -1)
    for bit in range(BITS):
        if index >> bit & 1:
            image[:32, bit * 16 : (bit + 1) * 16] = 255
    return image


def read_index(pixels: np.ndarray) -> int:
    return sum(
        1 << bit for bit in range(BITS) if pixels[8:24, bit * 16 + 4 : bit * 16 + 12].mean() > 160
    )


def encode(container_format: str, stamps=None) -> bytes:
    """FRAMES frames at FPS; `stamps(index) -> seconds` for a video whose rate changes as it
    goes (a phone's, a screen recorder's), time-stamped by the container."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(GOP), "bf": "2", "crf": "18", "sc_threshold": "0"}
        for index in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(draw(index), format="rgb24")
            if stamps is not None:
                frame.time_base = Fraction(1, 90000)
                frame.pts = round(stamps(index) * 90000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def dicom_video(stream: bytes, study_uid: str | None = None) -> pydicom.Dataset:
    """A Video Endoscopic Image object carrying the raw H.264 stream, as a scope would send."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), study_uid or generate_uid()
    ds.SeriesInstanceUID, ds.Modality = generate_uid(), "ES"
    ds.Rows = ds.Columns = SIDE
    ds.NumberOfFrames, ds.CineRate, ds.FrameTime = FRAMES, FPS, 1000 / FPS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_PARTIAL_420"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = encapsulate([stream])
    ds["PixelData"].VR = "OB"
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.LossyImageCompression, ds.ImageType = "01", ["ORIGINAL", "PRIMARY"]
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Video^Phantom", "V1", "", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
    ds.ReferringPhysicianName, ds.Manufacturer = "", "edge-agent tests"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.ContentDate, ds.ContentTime = "20260101", "120000"
    ds.AcquisitionDateTime = "20260101120000"
    return ds


def video_study(folder, stream: bytes):
    """A study folder holding one DICOM video, as the gateway would spool it."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = dicom_video(stream)
    ds.save_as(folder / "video.dcm", enforce_file_format=True)
    return folder
