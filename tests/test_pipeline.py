"""The pipeline end to end on real frames: the demo source (a real photo shipped in the
insightface wheel), the real CenterFace detector, the tracker and a real engine."""

from dataclasses import replace

import numpy as np
import pytest

from streamer.config import AppConfig, ConfigError, DetectConfig, EnhanceConfig, OutputConfig, SourceConfig
from streamer.pipeline import Pipeline
from streamer.sources import open_source


def _demo_frames(n: int, width: int = 1280, height: int = 720) -> list:
    src = open_source(SourceConfig(uri="demo", demo_width=width, demo_height=height))
    src.start()
    try:
        return [src.read(timeout=10) for _ in range(n)]
    finally:
        src.stop()


@pytest.fixture(scope="module")
def demo_frames():
    return _demo_frames(12)


def _cfg(**output) -> AppConfig:
    return AppConfig(
        detect=DetectConfig(input_width=1280, background=False),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(**output),
    )


def test_demo_faces_are_found_tracked_and_upscaled(demo_frames):
    pipe = Pipeline(_cfg(mode="upscale", upscale=2), "demo")
    results = [pipe.process(f) for f in demo_frames]
    last = results[-1]
    assert last.output.shape == (1440, 2560, 3)
    assert len(last.faces) >= 4, "the demo must show at least 4 faces"
    assert all(f.image.shape == (128, 128, 3) for f in last.faces)
    # Track ids are stable: the ids of the last frame were already there a few frames earlier.
    ids_mid = {t.track_id for t in results[6].tracks}
    ids_last = {t.track_id for t in last.tracks}
    assert len(ids_mid & ids_last) >= 4
    summary = pipe.stats.summary()
    assert {"detect", "track", "crop", "enhance", "composite"} <= set(summary)
    # Every stage is timed on every frame; the detector itself ran every `interval` frames only.
    assert summary["detect"]["count"] == len(demo_frames)
    assert pipe.detection.runs == -(-len(demo_frames) // pipe.cfg.detect.interval)


@pytest.mark.parametrize("mode, shape", [("inset", (720, 1280, 3)), ("gallery", (720, 1280 + 144, 3))])
def test_output_modes(demo_frames, mode, shape):
    pipe = Pipeline(_cfg(mode=mode), "demo")
    out = [pipe.process(f) for f in demo_frames[:4]][-1].output
    assert out.shape == shape
    # The enhanced content changed the picture compared with the source frame.
    assert (
        np.abs(out[:, :1280].astype(int) - demo_frames[3].image.astype(int)).mean() > 0.1 or mode == "gallery"
    )


def test_live_controls_apply_at_next_frame_and_refuse_bad_values(demo_frames):
    pipe = Pipeline(_cfg(mode="upscale", upscale=2), "demo")
    pipe.process(demo_frames[0])
    pipe.apply({"scale": 4, "mode": "gallery", "detect.interval": 2})
    r = pipe.process(demo_frames[1])
    assert pipe.controls["scale"] == 4 and pipe.enhancer.input_size == 32
    assert r.output.shape[1] == 1280 + 144
    assert pipe.controls["detect_interval"] == 2
    with pytest.raises(ConfigError):
        pipe.apply({"scale": 5})


def test_live_changes_compose_in_order_before_the_next_frame(demo_frames):
    """Two changes sent back to back both apply (the second builds on the first, not on the
    config the last frame used), and each call returns the state the next frame will use."""
    pipe = Pipeline(_cfg(mode="upscale", upscale=2), "demo")
    assert pipe.apply({"scale": 4})["scale"] == 4
    pending = pipe.apply({"mode": "gallery"})
    assert pending["scale"] == 4 and pending["mode"] == "gallery"
    pipe.process(demo_frames[0])
    assert pipe.controls["scale"] == 4 and pipe.controls["mode"] == "gallery"


def test_a_frame_with_300_faces_is_capped_not_fatal():
    from importlib.resources import files

    import cv2

    photo = cv2.imread(str(files("insightface") / "data/images/t1.jpg"))
    tile = cv2.resize(photo, (photo.shape[1] // 3, photo.shape[0] // 3), interpolation=cv2.INTER_AREA)
    big = np.tile(tile, (8, 8, 1))  # 6 faces per tile x 64 tiles = 384 faces
    cfg = replace(_cfg(), enhance=EnhanceConfig(engine="bicubic", entry="fixed", max_faces=16, per_frame=0))
    cfg = replace(cfg, detect=replace(cfg.detect, input_width=big.shape[1]))
    pipe = Pipeline(cfg, "crowd")
    from streamer.types import Frame

    r = pipe.process(Frame(image=big, index=0, pts=0.0, capture_time=0.0))
    assert len(r.faces) == 16
    assert len(r.tracks) <= cfg.detect.max_faces


def test_background_detection_feeds_the_tracker(demo_frames):
    cfg = replace(
        _cfg(mode="upscale", upscale=1), detect=DetectConfig(input_width=1280, background=True, interval=1)
    )
    pipe = Pipeline(cfg, "demo")
    try:
        results = [pipe.process(f) for f in demo_frames]
    finally:
        pipe.close()
    background = pipe.detection.background
    assert background is not None and background.runs >= 1
    # The first frame waits for the first detection, so faces are there from the start.
    assert len(results[0].tracks) >= 4
    assert min(len(r.faces) for r in results) >= 4
    assert "detector (background)" in pipe.stats.summary()
    assert not background._thread.is_alive()


def test_per_frame_budget_enhances_in_turn_and_shows_every_face(demo_frames):
    cfg = replace(
        _cfg(mode="upscale", upscale=1), enhance=EnhanceConfig(engine="bicubic", per_frame=2, reuse_below=0.0)
    )
    pipe = Pipeline(cfg, "demo")
    results = [pipe.process(f) for f in demo_frames]
    assert pipe.faces_enhanced == 2 * len(demo_frames)
    assert len(results[0].faces) == 2
    last = results[-1]
    assert len(last.faces) == len(last.tracks) >= 4, "faces not enhanced this frame reuse their newest crop"
    # Round robin: every track of the last frame got its turn recently.
    turns = [pipe._latest[t.track_id][0] for t in last.tracks]
    assert min(turns) >= len(demo_frames) - 1 - -(-len(last.tracks) // 2)


def test_a_face_that_did_not_change_reuses_its_enhancement(demo_frames):
    """The same picture over and over: after the first enhancement every face is reused; with
    reuse off, or once the picture changes, the engine runs again."""
    from streamer.types import Frame

    still = [Frame(image=demo_frames[0].image, index=i, pts=i / 30, capture_time=0.0) for i in range(6)]
    enhance = EnhanceConfig(engine="bicubic", per_frame=0, reuse_below=6.0)
    pipe = Pipeline(replace(_cfg(mode="upscale", upscale=1), mode="file", enhance=enhance), "demo")
    results = [pipe.process(f) for f in still]
    shown = sum(len(r.faces) for r in results)
    assert len(results[0].faces) >= 4 and all(len(r.faces) == len(r.tracks) for r in results)
    # Landmarks still settle (tracker, a region pass) on the first frames; most faces are reused.
    assert pipe.faces_reused >= 0.5 * (shown - len(results[0].faces))
    assert pipe.faces_enhanced + pipe.faces_reused == shown
    before = pipe.faces_enhanced
    darker = (demo_frames[0].image * 0.6).astype(np.uint8)
    r = pipe.process(Frame(image=darker, index=6, pts=6 / 30, capture_time=0.0))
    assert pipe.faces_enhanced - before >= len(r.faces) - 1

    always = Pipeline(
        replace(_cfg(mode="upscale", upscale=1), mode="file", enhance=replace(enhance, reuse_below=0.0)),
        "demo",
    )
    for f in still:
        always.process(f)
    assert always.faces_reused == 0 and always.faces_enhanced == sum(len(r.faces) for r in results)
