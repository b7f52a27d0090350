"""Random access into DICOM video built here: H.264 frames that carry their own index."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from edge_agent.video import Video, VideoError

FPS, FRAMES, GOP, SIDE = 30, 90, 12, 128
BITS = 8  # the frame index, drawn as 8 black/white blocks across the top


def draw(index: int) -> np.ndarray:
    image = np.full((SIDE, SIDE, 3), 60, np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            image[:32, bit * 16 : (bit + 1) * 16] = 255
    return image


def read_index(pixels: np.ndarray) -> int:
    return sum(
        1 << bit for bit in range(BITS) if pixels[8:24, bit * 16 + 4 : bit * 16 + 12].mean() > 160
    )


def encode(container_format: str) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(GOP), "bf": "2", "crf": "18", "sc_threshold": "0"}
        for index in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(draw(index), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def dicom_video(stream: bytes) -> pydicom.Dataset:
    """A Video Endoscopic Image object carrying the raw H.264 stream, as a scope would send."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesInstanceUID, ds.Modality = generate_uid(), "ES"
    ds.Rows = ds.Columns = SIDE
    ds.NumberOfFrames, ds.CineRate, ds.FrameTime = FRAMES, FPS, 1000 / FPS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_PARTIAL_420"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = encapsulate([stream])
    ds["PixelData"].VR = "OB"
    return ds


@pytest.fixture(scope="module")
def h264() -> bytes:
    return encode("h264")


def test_get_frame_returns_exactly_the_frame_for_t(h264):
    video = Video.from_dicom(dicom_video(h264))
    assert video.frame_count == FRAMES and video.frame_rate == FPS
    rng = np.random.default_rng(1)
    for t in [0.0, 1 / FPS, 0.5, 1.499, 2.0, FRAMES / FPS - 0.001, *rng.uniform(0, 3, 20)]:
        frame = video.frame_at(float(t))
        expected = int(t * FPS + 1e-9)
        assert read_index(frame.pixels) == expected, t
        assert frame.number == expected + 1
        assert frame.time_s == pytest.approx(expected / FPS)
        # Bounded by one GOP (+ the B-frame delay), not by t.
        assert video.decoded <= GOP + 3


def test_a_window_gives_its_timestamps(h264):
    video = Video.from_dicom(dicom_video(h264))
    frames = video.frames_between(1.0, 2.0, 5)
    assert [f.time_s for f in frames] == pytest.approx(
        [1.0, 1.233333, 1.5, 1.733333, 2.0], abs=1 / FPS
    )
    assert [read_index(f.pixels) for f in frames] == [f.number - 1 for f in frames]


def test_a_plain_mp4_file_works_too(tmp_path: Path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(encode("mp4"))
    video = Video.from_file(path)
    assert read_index(video.frame_at(2.5).pixels) == 75


def test_a_truncated_bitstream_is_a_clear_error(h264):
    with pytest.raises(VideoError, match="bitstream truncated"):
        Video.from_dicom(dicom_video(h264[: len(h264) // 2]))


def test_a_time_outside_the_video_is_refused(h264):
    with pytest.raises(VideoError, match="outside the video"):
        Video.from_dicom(dicom_video(h264)).frame_at(3.5)
