"""Random access into DICOM video built here: H.264 frames that carry their own index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imaging.video import Video, VideoError
from tests.videos import FPS, FRAMES, GOP, dicom_video, encode, read_index


@pytest.fixture(scope="module")
def h264() -> bytes:
    return encode("h264")


def test_get_frame_returns_exactly_the_frame_for_t(h264):
    video = Video.from_dicom(dicom_video(h264))
    assert video.frame_count == FRAMES and video.frame_rate == pytest.approx(FPS)
    rng = np.random.default_rng(1)
    for t in [0.0, 1 / FPS, 0.5, 1.499, 2.0, FRAMES / FPS - 0.001, *rng.uniform(0, 3, 20)]:
        frame = video.frame_at(float(t))
        expected = int(t * FPS + 1e-9)
        assert read_index(frame.pixels) == expected, t
        assert frame.number == expected + 1
        assert frame.time_s == pytest.approx(expected / FPS)
        # Bounded by one GOP (+ the B-frame delay), not by t.
        assert video.decoded <= GOP + 3


def test_a_plain_mp4_file_works_too(tmp_path: Path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(encode("mp4"))
    video = Video.from_file(path)
    assert read_index(video.frame_at(2.5).pixels) == 75


def test_a_video_whose_rate_changes_is_timed_by_its_own_time_stamps(tmp_path: Path):
    """Frames 1-45 at 30 fps, then 15 fps: frame 46 is at 1.5 s, frame 61 at 2.5 s (an average
    rate put them 0.7 s late)."""

    def stamps(index: int) -> float:
        return index / 30 if index < 45 else 1.5 + (index - 45) / 15

    path = tmp_path / "phone.mp4"
    path.write_bytes(encode("mp4", stamps))
    video = Video.from_file(path)
    for t, index in [(0.0, 0), (1.49, 44), (1.5, 45), (2.5, 60), (4.49, 89)]:
        frame = video.frame_at(t)
        assert read_index(frame.pixels) == index and frame.number == index + 1, t
        assert frame.time_s == pytest.approx(stamps(index)), t
    assert video.duration_s == pytest.approx(stamps(FRAMES - 1) + 1 / 15)


def test_a_truncated_bitstream_is_a_clear_error(h264):
    with pytest.raises(VideoError, match="bitstream truncated"):
        Video.from_dicom(dicom_video(h264[: len(h264) // 2]))


def test_a_time_outside_the_video_is_refused(h264):
    with pytest.raises(VideoError, match="outside the video"):
        Video.from_dicom(dicom_video(h264)).frame_at(3.5)
