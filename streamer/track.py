"""Face tracking: stable ids, motion prediction between detections, and jitter-free output.

Detection runs only every `DetectConfig.interval` frames and tiny faces flicker in and out of
the detector's reach, so the tracker must (1) keep one id per face across misses, (2) move
boxes and 5-point landmarks forward on frames where no detector ran, and (3) hand the aligner
landmarks that do not jitter, because a crop that shakes by one pixel at 16 px is a face that
shakes by 8 px after x8 super-resolution.

- Association is ByteTrack's (Zhang et al., 2022): detections at or above `high_score` are
  matched first to every track; the lower-scoring rest may only extend tracks still unmatched,
  never start one, which keeps faces through score dips without admitting false positives.
  Cost is 1 - IoU against the motion-predicted boxes, solved with the Hungarian method, in a
  cascade: plain IoU first, then IoU of boxes enlarged by `BUFFER` of their size on each side
  (Yang et al.'s C-BIoU) for what is left. A 16 px face that pans 4 px a frame has moved
  12 px between two detections every third frame, before its velocity is known: plain IoU is
  near 0.1 there and would start a new id; the buffered boxes still overlap.
- Motion is a constant-velocity Kalman filter per coordinate (box centre, size and the ten
  landmark coordinates), with noise proportional to the face height as in ByteTrack, so one
  set of constants fits 10 px and 200 px faces alike.
- On top of the filter, `smoothing` is an exponential average of the filter's residual after
  moving by its velocity: it removes jitter without the lag a plain average has on a face that
  moves steadily. A jump larger than half the face resets it, so real changes pass at once.

Pure numpy; `scipy.optimize.linear_sum_assignment` does the assignment.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamer.config import TrackConfig
from streamer.types import Detection, Track

log = logging.getLogger(__name__)

N_COORDS = 14
"""cx, cy, w, h, then the 5 landmarks' x, y."""

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160
"""ByteTrack's noise weights, as fractions of the face height per frame."""

BUFFER = 0.5
"""Second-chance matching enlarges boxes by this fraction of their width/height per side."""

RESET_JUMP = 0.5
"""A filtered jump larger than this fraction of the face height bypasses the output smoothing."""


def _to_state(det: Detection) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in det.box)
    box = [(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)]
    return np.concatenate([box, np.asarray(det.landmarks, dtype=np.float64).reshape(10)])


def _box_of(z: np.ndarray) -> np.ndarray:
    cx, cy, w, h = z[0], z[1], max(z[2], 1.0), max(z[3], 1.0)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x1y1x2y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _buffered(boxes: np.ndarray, b: float) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes + np.stack([-b * w, -b * h, b * w, b * h], axis=1)


def _assign(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Hungarian assignment maximising IoU; pairs below `min_iou` are not matches."""
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(1.0 - iou)
    return [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= min_iou]


def match_cascade(track_boxes: np.ndarray, det_boxes: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(track index, detection index) pairs: plain IoU first, then buffered IoU on the rest."""
    pairs = _assign(iou_matrix(track_boxes, det_boxes), min_iou)
    rest_t = [i for i in range(len(track_boxes)) if i not in {t for t, _ in pairs}]
    rest_d = [j for j in range(len(det_boxes)) if j not in {d for _, d in pairs}]
    if rest_t and rest_d:
        iou = iou_matrix(_buffered(track_boxes[rest_t], BUFFER), _buffered(det_boxes[rest_d], BUFFER))
        pairs += [(rest_t[r], rest_d[c]) for r, c in _assign(iou, min_iou)]
    return pairs


class _TrackState:
    """One face: a Kalman filter over 14 independent (position, velocity) pairs plus the
    smoothed output. Coordinates are independent given the face height, so the 2x2
    covariances are kept side by side and updated in one vectorised step."""

    def __init__(self, track_id: int, det: Detection, smoothing: float) -> None:
        z = _to_state(det)
        h = z[3]
        self.track_id = track_id
        self.x = np.stack([z, np.zeros(N_COORDS)], axis=1)  # (14, 2): position, velocity per frame
        self.P = np.zeros((N_COORDS, 2, 2))
        self.P[:, 0, 0] = (2 * STD_POSITION * h) ** 2
        self.P[:, 1, 1] = (10 * STD_VELOCITY * h) ** 2
        self.out = z.copy()
        self.smoothing = smoothing
        self.score = det.score
        self.age = 0
        self.hits = 1
        self.misses = 0
        self.confirmed = False

    @property
    def height(self) -> float:
        return float(max(self.x[3, 0], 1.0))

    def predict(self) -> None:
        h = self.height
        self.x[:, 0] += self.x[:, 1]
        p = self.P
        # F P F^T with F = [[1, 1], [0, 1]], written out for the (14, 2, 2) stack.
        p00 = p[:, 0, 0] + p[:, 0, 1] + p[:, 1, 0] + p[:, 1, 1]
        p01 = p[:, 0, 1] + p[:, 1, 1]
        p10 = p[:, 1, 0] + p[:, 1, 1]
        p[:, 0, 0], p[:, 0, 1], p[:, 1, 0] = p00, p01, p10
        p[:, 0, 0] += (STD_POSITION * h) ** 2
        p[:, 1, 1] += (STD_VELOCITY * h) ** 2
        self.out = self.out + self.x[:, 1]
        self.age += 1

    def correct(self, det: Detection, lag: int = 0) -> None:
        """Kalman update; a detection `lag` frames old is first moved forward by the velocity."""
        z = _to_state(det) + lag * self.x[:, 1]
        r = (STD_POSITION * self.height) ** 2
        s = self.P[:, 0, 0] + r
        k = self.P[:, :, 0] / s[:, None]  # (14, 2) Kalman gain
        self.x += k * (z - self.x[:, 0])[:, None]
        self.P -= k[:, :, None] * self.P[:, 0, :][:, None, :]
        filtered = self.x[:, 0]
        resid = filtered - self.out
        if np.abs(resid[:2]).max() > RESET_JUMP * self.height:
            self.out = filtered.copy()
        else:
            self.out = self.out + (1.0 - self.smoothing) * resid
        self.score = det.score
        self.hits += 1
        self.misses = 0

    def predicted_box(self, lag: int = 0) -> np.ndarray:
        """The filter's box now, or `lag` frames ago (to compare with a late detection)."""
        return _box_of(self.x[:, 0] - lag * self.x[:, 1])

    def to_track(self) -> Track:
        return Track(
            track_id=self.track_id,
            box=_box_of(self.out),
            landmarks=self.out[4:].reshape(5, 2).astype(np.float32),
            score=self.score,
            age=self.age,
            hits=self.hits,
            misses=self.misses,
        )


class Tracker:
    """ByteTrack-style multi-face tracker; call `update` once per frame."""

    def __init__(self, cfg: TrackConfig) -> None:
        self.cfg = cfg
        self._tracks: list[_TrackState] = []
        self._next_id = 1
        self._dead: list[int] = []
        self._runs = 0

    def update(
        self, detections: list[Detection] | None, frame: np.ndarray | None = None, lag: int = 0
    ) -> list[Track]:
        """Advance one frame. `detections=None` means no detector ran: every track moves by its
        velocity and no miss is counted. `frame`, when given, only supplies the frame size:
        tracks predicted entirely outside it die. `lag` says the detections were computed on the
        frame `lag` frames before this one (a detector running in the background): they are
        matched against where each track was then and moved forward by its velocity, instead
        of pulling moving faces back. Returns the confirmed live tracks."""
        if lag < 0:
            raise ValueError(f"lag must be >= 0 frames, got {lag}")
        for t in self._tracks:
            t.predict()
        if detections is not None:
            self._associate(detections, lag)
        if frame is not None:
            self._drop_outside(frame.shape[1], frame.shape[0])
        return [t.to_track() for t in self._tracks if t.confirmed]

    def pop_dead(self) -> list[int]:
        """Ids of confirmed tracks that ended since the last call, so per-track state elsewhere
        (temporal engines, galleries) can be released."""
        dead, self._dead = self._dead, []
        return dead

    def _associate(self, detections: list[Detection], lag: int) -> None:
        cfg = self.cfg
        self._runs += 1
        high = [d for d in detections if d.score >= cfg.high_score]
        low = [d for d in detections if d.score < cfg.high_score]
        tracks = self._tracks
        matched_tracks: set[int] = set()

        pred = np.array([t.predicted_box(lag) for t in tracks]).reshape(-1, 4)
        high_boxes = np.array([d.box for d in high], dtype=np.float64).reshape(-1, 4)
        pairs = match_cascade(pred, high_boxes, cfg.match_iou)
        for ti, di in pairs:
            tracks[ti].correct(high[di], lag)
            matched_tracks.add(ti)
        used = {di for _, di in pairs}
        new_dets = [d for i, d in enumerate(high) if i not in used]

        rest = [i for i in range(len(tracks)) if i not in matched_tracks and tracks[i].confirmed]
        if rest and low:
            low_boxes = np.array([d.box for d in low], dtype=np.float64).reshape(-1, 4)
            for ri, di in match_cascade(pred[rest], low_boxes, cfg.match_iou):
                tracks[rest[ri]].correct(low[di], lag)
                matched_tracks.add(rest[ri])

        survivors = []
        for i, t in enumerate(tracks):
            if i not in matched_tracks:
                t.misses += 1
                # A tentative track that misses is noise; a confirmed one gets max_misses chances.
                if not t.confirmed or t.misses > cfg.max_misses:
                    self._kill(t)
                    continue
            if t.hits >= cfg.min_hits:
                t.confirmed = True
            survivors.append(t)
        for d in new_dets:
            t = _TrackState(self._next_id, d, cfg.smoothing)
            self._next_id += 1
            # As in ByteTrack, faces present when tracking starts have no history to wait for.
            t.confirmed = cfg.min_hits <= 1 or self._runs == 1
            survivors.append(t)
        self._tracks = survivors

    def _drop_outside(self, width: int, height: int) -> None:
        keep = []
        for t in self._tracks:
            x1, y1, x2, y2 = t.predicted_box()
            if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
                self._kill(t)
            else:
                keep.append(t)
        self._tracks = keep

    def _kill(self, t: _TrackState) -> None:
        if t.confirmed:
            self._dead.append(t.track_id)
            log.debug("track %d ended after %d frames (%d hits)", t.track_id, t.age, t.hits)
