"""File jobs with their stages overlapped across threads (streamer.stage_threads): the same output
as the sequential job frame for frame, in order, every stage timed, live changes taken at one
frame by both halves, and a failure in any stage ending the job with no thread left behind.
Real components throughout: the demo camera, CenterFace, the FSR engines, x264."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.cli import make_parser
from streamer.config import AppConfig, EnhanceConfig, OutputConfig, SourceConfig, TrackConfig
from streamer.enhance_job import run_enhance
from streamer.pipeline import STAGES, Pipeline, Staged
from streamer.sources.demo import DemoSource
from streamer.types import Frame, FrameResult
from tests.conftest import write_clip

DEMO = SourceConfig(uri="demo", name="demo")


def _file_cfg(overlap: str, **enhance: object) -> AppConfig:
    return AppConfig(mode="file", enhance=EnhanceConfig(overlap=overlap, **enhance))  # type: ignore[arg-type]


def _decoded(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def faces_then_empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """14 frames of the demo camera, then 10 of bare grey wall: every track ends in the clip."""
    demo = DemoSource(DEMO)
    demo.start()

    def frame(i: int, w: int, h: int) -> np.ndarray:
        return demo.render(i) if i < 14 else np.full((h, w, 3), 118, np.uint8)

    return write_clip(
        tmp_path_factory.mktemp("overlap") / "faces.mp4", size=(1280, 720), frames=24, image_fn=frame
    )


def test_overlapped_job_writes_what_the_sequential_one_writes(faces_then_empty: Path, tmp_path: Path) -> None:
    """Gallery mode shows a face per live track, so a track forgotten one frame early or late by
    the back half (the tracks that ended travel with the frame) would change the picture."""
    results: dict[str, list[FrameResult]] = {}
    summaries = {}
    for overlap in ("off", "on"):
        cfg = replace(
            _file_cfg(overlap), track=TrackConfig(max_misses=1), output=OutputConfig(mode="gallery")
        )
        got: list[FrameResult] = []
        summaries[overlap] = run_enhance(
            cfg, SourceConfig(uri=str(faces_then_empty)), tmp_path / f"{overlap}.mp4", on_result=got.append
        )
        results[overlap] = got
    seq, ovl = results["off"], results["on"]
    assert summaries["on"]["overlapped"] and not summaries["off"]["overlapped"]
    assert [r.frame.index for r in ovl] == list(range(24)) == [r.frame.index for r in seq]
    assert max(len(r.faces) for r in seq) >= 4 and seq[-1].tracks == [], "faces must come and go"
    for a, b in zip(seq, ovl, strict=True):
        assert [t.track_id for t in a.tracks] == [t.track_id for t in b.tracks]
        np.testing.assert_array_equal(a.output, b.output, err_msg=f"frame {a.frame.index}")
    # The mp4s hold those frames in that order and timing. Not bit for bit: this x264 (PyAV 18.1's
    # wheel) reads uninitialised memory, so even one thread encoding the same frames twice
    # writes different bytes when the heap holds different garbage (MALLOC_PERTURB_=1, 2 or 165
    # each give other bytes). The differences are a few levels on a few hundred pixels.
    written = {o: _decoded(tmp_path / f"{o}.mp4") for o in ("off", "on")}
    assert len(written["on"]) == 24
    for i, ((t_seq, img_seq), (t_ovl, img_ovl)) in enumerate(zip(written["off"], written["on"], strict=True)):
        assert t_seq == t_ovl
        assert np.abs(img_seq.astype(np.int16) - img_ovl).mean() < 0.05, f"frame {i}"
    # Every stage is still timed once per frame, whichever thread ran it.
    stages = summaries["on"]["stages"]
    assert {s: stages[s]["count"] for s in (*STAGES, "encode")} == dict.fromkeys((*STAGES, "encode"), 24.0)


def test_a_live_change_switches_both_halves_at_the_same_frame() -> None:
    """Output mode (read by the back half) and entry (read by the front half, which cuts crops
    for the engines it builds) change at one frame; the engines replaced are closed only after
    the last frame that needed them (a closed engine would fail the job)."""
    pipe = Pipeline(_file_cfg("on"), "demo")
    got: list[FrameResult] = []

    def watch(result: FrameResult) -> None:
        got.append(result)
        if result.frame.index == 2:
            pipe.apply({"mode": "upscale", "entry": "fixed"})

    try:
        run_enhance(pipe.cfg, DEMO, None, max_frames=12, pipeline=pipe, on_result=watch)
    finally:
        pipe.close()
    upscaled = [r.output.shape == (1440, 2560, 3) for r in got]
    fixed = [bool(r.faces) and all(f.crop.size == 16 for f in r.faces) for r in got]
    switch = upscaled.index(True)
    assert 2 < switch < 12
    assert upscaled == [False] * switch + [True] * (12 - switch)
    assert fixed == upscaled
    assert min(len(r.faces) for r in got) >= 4


class FailingAt(Pipeline):
    """Raises at frame `at` in the half named by `where`."""

    def __init__(self, cfg: AppConfig, where: str, at: int = 3) -> None:
        super().__init__(cfg, "failing")
        self.where, self.at = where, at

    def front(self, frame: Frame) -> Staged:
        if self.where == "front" and frame.index == self.at:
            raise RuntimeError("front failed at frame 3")
        return super().front(frame)

    def back(self, staged: Staged) -> FrameResult:
        if self.where == "back" and staged.frame.index == self.at:
            raise RuntimeError("back failed at frame 3")
        return super().back(staged)


@pytest.mark.parametrize("where", ["front", "back", "encode"])
def test_a_failing_stage_fails_the_job_and_ends_every_thread(where: str, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    pipe = FailingAt(_file_cfg("on", engine="bicubic"), where)
    seen: list[int] = []

    def consume(result: FrameResult) -> None:
        if where == "encode" and result.frame.index == 3:
            raise RuntimeError("encode failed at frame 3")
        seen.append(result.frame.index)

    try:
        with pytest.raises(RuntimeError, match=f"{where} failed at frame 3"):
            run_enhance(pipe.cfg, DEMO, tmp_path / "out.mp4", max_frames=40, pipeline=pipe, on_result=consume)
    finally:
        pipe.close()
    # Results before the failure may or may not have reached the consumer yet, but in order.
    assert seen == list(range(len(seen))) and len(seen) <= 3
    assert where != "encode" or seen == [0, 1, 2]
    assert set(threading.enumerate()) <= before


def test_overlap_is_a_flag_of_enhance_only() -> None:
    parser = make_parser()
    enhance = parser.parse_args(["enhance", "--overlap", "off"])
    assert getattr(enhance, "enhance.overlap") == "off"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--overlap", "on"])
