"""Tracker behaviour on synthetic, noisy face trajectories (no video needed)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from streamer.config import AppConfig, ConfigError, TrackConfig, validate
from streamer.track import Tracker, iou_matrix
from streamer.types import Detection

# Landmarks of a face box as fractions of its width/height (roughly InsightFace's layout).
LM_FRACTIONS = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])


def face(
    cx: float,
    cy: float,
    size: float = 40.0,
    score: float = 0.9,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Detection:
    w, h = size, size * 1.25
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    lms = box[:2] + LM_FRACTIONS * [w, h]
    if noise and rng is not None:
        box = box + rng.normal(0, noise, 4)
        lms = lms + rng.normal(0, noise, (5, 2))
    return Detection(box=box.astype(np.float32), score=score, landmarks=lms.astype(np.float32))


def centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def by_id(tracks: list) -> dict:
    return {t.track_id: t for t in tracks}


def test_noisy_moving_faces_keep_their_ids() -> None:
    rng = np.random.default_rng(1)
    tracker = Tracker(TrackConfig())
    starts = [(100.0, 100.0, 2.0, 0.5), (400.0, 120.0, -1.5, 1.0), (250.0, 400.0, 0.5, -2.0)]
    ids_seen: list[set[int]] = []
    for f in range(90):
        dets = [face(x + vx * f, y + vy * f, noise=1.5, rng=rng) for x, y, vx, vy in starts]
        tracks = tracker.update(dets)
        ids_seen.append({t.track_id for t in tracks})
        assert len(tracks) == 3
    assert all(ids == {1, 2, 3} for ids in ids_seen)
    final = by_id(tracks)
    for tid, (x, y, vx, vy) in zip((1, 2, 3), starts, strict=True):
        assert np.allclose(centre(final[tid].box), (x + vx * 89, y + vy * 89), atol=3.0)


def test_crossing_faces_keep_ids_even_when_one_is_hidden() -> None:
    rng = np.random.default_rng(2)
    tracker = Tracker(TrackConfig())
    history: dict[int, list[float]] = {}
    for f in range(60):
        xa, xb = 100 + 5 * f, 400 - 5 * f  # they meet at f=30
        dets = [face(xa, 200, noise=1.0, rng=rng)]
        if not 28 <= f <= 32:  # B passes behind A: the detector misses it
            dets.append(face(xb, 210, noise=1.0, rng=rng))
        for t in tracker.update(dets):
            history.setdefault(t.track_id, []).append(float(centre(t.box)[0]))
    assert set(history) == {1, 2}
    assert history[1][-1] > history[1][0] + 200  # id 1 kept moving right
    assert history[2][-1] < history[2][0] - 200  # id 2 kept moving left


def test_vanished_face_dies_after_max_misses_and_is_reported_once() -> None:
    cfg = TrackConfig(max_misses=4)
    tracker = Tracker(cfg)
    for f in range(10):
        tracker.update([face(100 + f, 100), face(300, 300)])
    assert tracker.pop_dead() == []
    alive_for = 0
    for _ in range(10):
        ids = {t.track_id for t in tracker.update([face(300, 300)])}
        if 1 in ids:
            alive_for += 1
    assert alive_for == cfg.max_misses
    assert tracker.pop_dead() == [1]
    assert tracker.pop_dead() == []


def test_frames_without_detection_carry_box_and_landmarks_with_velocity() -> None:
    tracker = Tracker(TrackConfig(smoothing=0.0))
    v = np.array([3.0, 1.0])
    for f in range(15):
        tracks = tracker.update([face(100 + v[0] * f, 100 + v[1] * f)])
    last = tracks[0]
    for k in range(1, 6):
        (t,) = tracker.update(None)
        assert t.hits == last.hits
        assert t.misses == 0
        assert np.allclose(centre(t.box), centre(last.box) + k * v, atol=0.6)
        assert np.allclose(t.landmarks, last.landmarks + k * v, atol=0.6)


def test_detection_every_third_frame_keeps_id_and_follows_motion() -> None:
    rng = np.random.default_rng(3)
    tracker = Tracker(TrackConfig())
    for f in range(60):
        truth = (50 + 4 * f, 300 - 2 * f)
        tracks = tracker.update([face(*truth, size=16, noise=0.8, rng=rng)] if f % 3 == 0 else None)
        assert [t.track_id for t in tracks] == [1]
    assert np.allclose(centre(tracks[0].box), truth, atol=3.0)


def landmark_jitter(tracker: Tracker, dets: list[Detection]) -> float:
    """Std of frame-to-frame landmark displacement of a still face."""
    lms = [tracker.update([d])[0].landmarks for d in dets]
    return float(np.std(np.diff(np.array(lms[10:]), axis=0)))


def test_smoothing_reduces_landmark_jitter() -> None:
    rng = np.random.default_rng(4)
    dets = [face(200, 200, size=20, noise=1.0, rng=rng) for _ in range(200)]
    raw = float(np.std(np.diff(np.array([d.landmarks for d in dets[10:]]), axis=0)))
    filtered = landmark_jitter(Tracker(TrackConfig(smoothing=0.0)), dets)
    smoothed = landmark_jitter(Tracker(TrackConfig(smoothing=0.6)), dets)
    assert filtered < 0.8 * raw
    assert smoothed < 0.8 * filtered


def test_smoothing_does_not_lag_behind_steady_motion() -> None:
    tracker = Tracker(TrackConfig(smoothing=0.8))
    for f in range(40):
        tracks = tracker.update([face(100 + 5 * f, 100)])
    assert abs(centre(tracks[0].box)[0] - (100 + 5 * 39)) < 1.0


def test_low_score_detections_extend_tracks_but_never_start_them() -> None:
    tracker = Tracker(TrackConfig(high_score=0.5, max_misses=2, min_hits=1))
    assert tracker.update([face(300, 300, score=0.3)]) == []
    for f in range(5):
        tracker.update([face(100 + f, 100, score=0.9), face(300, 300, score=0.3)])
    hits = -1
    for f in range(5, 15):  # score dips below high_score: the track must survive on low-score matches
        tracks = tracker.update([face(100 + f, 100, score=0.35)])
        assert [t.track_id for t in tracks] == [1]
        assert tracks[0].hits > hits
        hits = tracks[0].hits


def test_faces_present_at_start_are_confirmed_at_once() -> None:
    tracker = Tracker(TrackConfig(min_hits=3))
    assert [t.track_id for t in tracker.update([face(100, 100), face(300, 100)])] == [1, 2]


def test_min_hits_delays_birth_and_tentative_misses_vanish_silently() -> None:
    tracker = Tracker(TrackConfig(min_hits=3))
    assert tracker.update([]) == []
    assert tracker.update([face(100, 100)]) == []
    assert tracker.update([face(101, 100)]) == []
    assert [t.track_id for t in tracker.update([face(102, 100)])] == [1]
    tracker.update([face(500, 500)])  # a one-frame false positive...
    tracker.update([face(104, 100)])  # ...that is not seen again
    assert tracker.pop_dead() == []
    assert [t.track_id for t in tracker.update([face(105, 100)])] == [1]


def test_face_leaving_the_frame_dies() -> None:
    tracker = Tracker(TrackConfig(max_misses=100))
    frame = np.zeros((240, 320, 3), np.uint8)
    for f in range(10):
        tracker.update([face(200 + 10 * f, 120)], frame)
    for _ in range(30):
        tracks = tracker.update(None, frame)
    assert tracks == []
    assert tracker.pop_dead() == [1]


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.array([[5, 0, 15, 10]], float)
    assert np.allclose(iou_matrix(a, b), [[50 / 150], [0.0]])


def test_high_score_is_validated() -> None:
    with pytest.raises(ConfigError, match="high_score"):
        validate(replace(AppConfig(), track=TrackConfig(high_score=1.5)))


def late_detection_error(lag_known: bool) -> float:
    """A 16 px face panning 4 px/frame; the detector runs in the background and its result for
    frame f arrives at frame f + 3. Returns the final centre error in px."""
    rng = np.random.default_rng(5)
    tracker = Tracker(TrackConfig())
    truth = lambda f: (60 + 4 * f, 200.0)  # noqa: E731
    for f in range(90):
        late = f >= 3 and f % 3 == 0
        dets = [face(*truth(f - 3), size=16, noise=0.5, rng=rng)] if late else None
        tracks = tracker.update(dets, lag=3 if (late and lag_known) else 0)
        assert [t.track_id for t in tracks] in ([], [1])
    return float(np.abs(centre(tracks[0].box) - truth(89)).max())


def test_late_detections_are_moved_forward_instead_of_pulling_faces_back() -> None:
    assert late_detection_error(lag_known=False) > 6.0
    assert late_detection_error(lag_known=True) < 3.0
    with pytest.raises(ValueError, match="lag"):
        Tracker(TrackConfig()).update([], lag=-1)
