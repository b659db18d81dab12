"""The built-in demo source: a real (public-domain) photo, known faces of 10-24 px, deterministic
motion."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamer.config import DetectConfig, SourceConfig
from streamer.detectors import build_detector
from streamer.sources import DemoSource, FrameSource, open_source
from streamer.track import iou_matrix


@pytest.fixture(scope="module")
def demo720() -> DemoSource:
    src = open_source(SourceConfig(uri="demo"))
    assert isinstance(src, DemoSource)
    src.start()
    return src


def test_demo_is_a_frame_source_at_720p30(demo720: DemoSource) -> None:
    assert isinstance(demo720, FrameSource)
    assert demo720.fps == 30.0 and not demo720.is_live
    frames = [demo720.read() for _ in range(3)]
    assert all(f is not None for f in frames)
    assert frames[0].image.shape == (720, 1280, 3) and frames[0].image.dtype == np.uint8
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.pts for f in frames] == pytest.approx([0.0, 1 / 30, 2 / 30])


def test_faces_are_10_to_24_px_and_at_least_4_in_view(demo720: DemoSource) -> None:
    # Sample two minutes of motion: pan, zoom and shake must keep faces in the extreme-FSR range.
    counts, heights = [], []
    for n in range(0, 3600, 15):
        boxes = demo720.faces_in_view(n)
        counts.append(len(boxes))
        heights.extend(boxes[:, 3] - boxes[:, 1])
    assert min(counts) >= 4, f"a frame showed only {min(counts)} whole faces"
    assert 10.0 <= min(heights) and max(heights) <= 24.0, (min(heights), max(heights))


def test_a_real_detector_finds_the_known_faces(demo720: DemoSource) -> None:
    """CenterFace (the project's default detector, shipped in this package) on a rendered frame."""
    n = 900
    image = demo720.render(n)
    truth = demo720.faces_in_view(n)
    dets = build_detector(DetectConfig(threshold=0.5)).detect(image)
    boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
    matched = int((iou_matrix(np.asarray(truth, dtype=np.float64), boxes) > 0.4).any(axis=1).sum())
    assert len(truth) >= 4 and matched >= 4, f"{matched} of {len(truth)} true faces detected"


def test_motion_is_smooth_and_deterministic(demo720: DemoSource) -> None:
    other = DemoSource(SourceConfig(uri="demo"))
    other.start()
    assert np.array_equal(other.render(123), demo720.render(123)), "same seed, same frame"
    centres = np.array([demo720.faces_in_view(n)[:, :2].mean(axis=0) for n in range(200, 206)])
    step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert np.all(step < 8.0), f"faces jump {step.max():.1f} px between frames"
    assert not np.array_equal(demo720.render(0), demo720.render(60)), "the camera moves"
    seeded = DemoSource(SourceConfig(uri="demo", demo_seed=3, demo_width=320, demo_height=180))
    small = DemoSource(SourceConfig(uri="demo", demo_width=320, demo_height=180))
    seeded.start()
    small.start()
    assert not np.array_equal(seeded.render(10), small.render(10)), "another seed, another layout"


def test_demo_seconds_ends_the_stream() -> None:
    src = open_source(SourceConfig(uri="demo", demo_width=160, demo_height=120, demo_seconds=0.5))
    frames = list(src)
    assert len(frames) == 15
    assert src.ended and src.read() is None


def test_realtime_demo_is_live_paced_and_drops_when_consumer_is_slow() -> None:
    src = open_source(SourceConfig(uri="demo", demo_width=160, demo_height=120, demo_fps=10.0), live=True)
    assert src.is_live
    src.start()
    try:
        first = src.read(timeout=1.0)
        assert src.read(timeout=0.0) is None, "the next frame is not due yet"
        time.sleep(0.6)
        later = src.read(timeout=1.0)
    finally:
        src.stop()
    assert first is not None and later is not None
    assert later.index == 1
    assert later.pts >= 0.5 and src.stats.frames_dropped >= 4
    assert src.read(timeout=0.1) is None, "a stopped source delivers nothing"


def test_stop_then_start_resumes_the_timeline() -> None:
    src = DemoSource(SourceConfig(uri="demo", demo_width=160, demo_height=120))
    src.start()
    first = [src.read(), src.read()]
    src.stop()
    assert src.read() is None and src.state == "stopped"
    src.start()
    again = src.read()
    assert first[1] is not None and again is not None
    assert again.index == 2 and again.pts == pytest.approx(2 / 30) and src.state == "live"


def test_read_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        DemoSource(SourceConfig(uri="demo")).read()
