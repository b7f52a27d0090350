"""get_frame cost on a long video: random times in a synthetic 720p H.264 stream, our key-frame
seek vs decoding from the start (what a naive reader does), in one run.

    .venv/bin/python benchmarks/video.py [--minutes 10] [--calls 30]

Prints the median latency of each and frames decoded per call. Not a test."""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imaging.video import Video

FPS, GOP, WIDTH, HEIGHT = 30, 60, 1280, 720


def synthetic(minutes: float) -> bytes:
    import av

    buffer = io.BytesIO()
    frames = int(minutes * 60 * FPS)
    base = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    with av.open(buffer, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"g": str(GOP), "bf": "2", "preset": "ultrafast", "sc_threshold": "0"}
        for index in range(frames):
            base[:, :, 0] = index % 256
            base[100:200, (index * 7) % (WIDTH - 100) :][:, :100] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(base, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def from_start(video: Video, t: float) -> int:
    """Decode every frame up to t: the cost without a key-frame index."""
    import av

    codec = av.CodecContext.create(video.codec, "r")
    target, shown = int(t * video.frame_rate), 0
    for data, _ in video._packets:
        for _frame in codec.decode(av.Packet(data)):
            if shown == target:
                return shown + 1
            shown += 1
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    start = time.perf_counter()
    data = synthetic(args.minutes)
    print(
        f"{args.minutes:g} min 720p H.264 ({len(data) / 1e6:.0f} MB, GOP {GOP}) encoded in "
        f"{time.perf_counter() - start:.0f} s"
    )
    video = Video(data, "h264", FPS)
    times = np.random.default_rng(0).uniform(0, video.duration_s - 1, args.calls)
    ours, decoded = [], []
    for t in times:
        t0 = time.perf_counter()
        video.frame_at(float(t))
        ours.append(time.perf_counter() - t0)
        decoded.append(video.decoded)
    naive, naive_decoded = [], []
    for t in times[: max(3, args.calls // 10)]:  # slow: a few calls are enough
        t0 = time.perf_counter()
        naive_decoded.append(from_start(video, float(t)))
        naive.append(time.perf_counter() - t0)
    print(
        f"key-frame seek: median {statistics.median(ours) * 1000:.1f} ms, frames decoded per "
        f"call max {max(decoded)} (bounded by one GOP = {GOP})"
    )
    print(
        f"from the start: median {statistics.median(naive) * 1000:.1f} ms, frames decoded per "
        f"call median {statistics.median(naive_decoded):.0f}"
    )
    print(f"ratio from-start / seek: {statistics.median(naive) / statistics.median(ours):.0f}x")


if __name__ == "__main__":
    main()
