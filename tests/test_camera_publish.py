"""What the camera thread prepares for the encoders: only the track kinds someone watches."""

from __future__ import annotations

import time

import numpy as np

from streamer.config import AppConfig, SourceConfig
from streamer.server.camera import CameraRunner
from streamer.types import Frame, FrameResult, StageTimes


def _result(index: int) -> FrameResult:
    image = np.full((72, 128, 3), index * 10 % 255, np.uint8)
    output = np.full((144, 256, 3), 200, np.uint8)
    return FrameResult(Frame(image, index, index / 30, time.monotonic()), output, [], [], StageTimes(), 0.0)


def test_only_watched_kinds_are_converted_in_the_camera_thread() -> None:
    runner = CameraRunner(AppConfig(), SourceConfig(uri="demo", name="cam"))
    runner.viewers = 1
    runner._publish(_result(0), time.monotonic())
    first = runner.latest
    assert first is not None and first.frames == {}, "nobody has asked for a kind yet"
    enhanced = first.enhanced  # a track asks: converted on the spot, and the kind is now watched
    assert (enhanced.format.name, enhanced.width, enhanced.height) == ("yuv420p", 256, 144)
    assert first.enhanced is enhanced, "converted once per result"
    runner._publish(_result(1), time.monotonic())
    second = runner.latest
    assert second is not None and set(second.frames) == {"enhanced"}
    original = second.original
    assert (original.width, original.height) == (128, 72)
    runner._publish(_result(2), time.monotonic())
    assert set(runner.latest.frames) == {"enhanced", "original"}  # type: ignore[union-attr]


def test_nothing_is_converted_without_viewers() -> None:
    runner = CameraRunner(AppConfig(), SourceConfig(uri="demo", name="cam"))
    runner._asked["enhanced"] = time.monotonic()
    runner._publish(_result(0), time.monotonic())
    assert runner.latest is not None and runner.latest.frames == {}
