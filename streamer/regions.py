"""Where a region pass of the detection stage looks, and how its detections come back.

A full 720p frame at native width costs CenterFace ~110 ms of CPU and still misses faces under
12 px (its output stride is 4: a 10 px face covers 2.5 heatmap cells). Between full passes the
stage therefore looks only where faces are or may appear, enlarged so that tiny faces reach the
size the network finds reliably:

- around every known face, a square region about `CONTEXT` faces wide, zoomed so the face is
  `FACE_NET_PX` network pixels tall (at most `MAX_ZOOM`x), smallest faces first within
  `FACE_BUDGET_PX`. All such regions of one size run in one batched network call: at 96 px a
  call costs more in overhead than in pixels.
- one tile of a rolling scan: the frame cut into `SCAN_TILE` tiles, each detected at `SCAN_ZOOM`x
  in turn, so a face that never moved and was never found full-frame is found within one cycle.
- where the picture changed: the difference to the previous region pass after removing the
  camera's global shift (phase correlation on a small copy), so a face walking in is found at
  the next pass instead of at the end of the scan cycle. When most of the picture changed (a
  cut, a fast zoom) motion says nothing and no motion region is made.

Detections touching a region's border inside the frame are dropped (a face cut by the border is
found whole by the region that holds it, or by the next full pass); the rest are merged by NMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import cv2
import numpy as np

from streamer.detectors.base import FaceDetector, nms
from streamer.types import Detection

FACE_NET_PX = 32.0
"""A face's height in network pixels inside a face region: CenterFace finds every face of 16 px
and up at native size (benchmarks/detection.py), 32 leaves room for a face that shrinks."""
CONTEXT = 3.0
"""A face region's side in face heights: room for the motion between two passes."""
MAX_ZOOM = 3.0
FACE_BUDGET_PX = 320_000
"""Network pixels of face regions per pass, a third of a whole 1280x736 frame: about 35 tiny
faces. Beyond it (a crowd), the larger faces are carried by flow until a whole-frame pass.
Without it the tiny-face sweep of benchmarks/detection (120-720 faces per canvas) cost 3.8x
the detector CPU of whole-frame passes; with it 0.9x, at the same recall."""
SCAN_TILE = (320, 240)
SCAN_OVERLAP = 48
"""Larger than the biggest face a tile is meant to find (24 px at native size): a face cut by
one tile's border lies whole in its neighbour."""
SCAN_ZOOM = 1.5
"""Tiles and motion regions at 1.5x: 10 px faces become 15 px, which CenterFace finds at 0.92
or better. Measured on the tiny-face sweep and the demo (benchmarks/detection): 2x reached
recall 1.00 at 10 px against 0.87 at 1.5x (1.00 at 12 px both), for 1.7x the demo's CPU."""
MOTION_STEP = 8
"""Motion is computed on a copy this many times smaller: cheap, and faces of 10 px still change
a whole cell."""
MOTION_THRESHOLD = 12
"""Grey levels a pixel of the small copy must change by to count as moved (above sensor noise
and compression flicker)."""
MOTION_MAX_FRACTION = 0.25
MOTION_MAX_REGIONS = 2
MOTION_MAX_SIDE = 128
"""Motion regions are squares of at most this side (native px), detected at `SCAN_ZOOM`x."""
MERGE_IOU = 0.3
EDGE_PX = 1.0


@dataclass(frozen=True)
class Region:
    """A crop of the frame (x1, y1, x2, y2, integer frame pixels) run at network width `width`."""

    x1: int
    y1: int
    x2: int
    y2: int
    width: int

    @property
    def box(self) -> np.ndarray:
        return np.array([self.x1, self.y1, self.x2, self.y2], dtype=np.float32)


def _ceil32(v: float) -> int:
    return max(32, int(np.ceil(v / 32.0)) * 32)


def _placed(cx: float, cy: float, side_w: int, side_h: int, frame_w: int, frame_h: int, width: int) -> Region:
    """A side_w x side_h region centred on (cx, cy), moved (not shrunk) to lie inside the frame,
    so regions of one size stay one size and batch together."""
    side_w, side_h = min(side_w, frame_w), min(side_h, frame_h)
    x1 = int(np.clip(round(cx - side_w / 2), 0, frame_w - side_w))
    y1 = int(np.clip(round(cy - side_h / 2), 0, frame_h - side_h))
    return Region(x1, y1, x1 + side_w, y1 + side_h, width)


def face_regions(
    boxes: list[np.ndarray], frame_w: int, frame_h: int, budget: float = FACE_BUDGET_PX
) -> list[tuple[int, Region]]:
    """(index into `boxes`, region) for known faces, smallest face first (the ones the whole
    frame misses), until the regions' network pixels reach `budget`."""
    picked = []
    spent = 0.0
    for i in sorted(range(len(boxes)), key=lambda i: float(boxes[i][3] - boxes[i][1])):
        x1, y1, x2, y2 = boxes[i]
        h = float(max(y2 - y1, x2 - x1, 1.0))
        zoom = float(np.clip(FACE_NET_PX / h, 1.0, MAX_ZOOM))
        net = _ceil32(CONTEXT * h * zoom)
        if spent + net * net > budget:
            break
        spent += net * net
        side = int(round(net / zoom))
        picked.append((i, _placed((x1 + x2) / 2, (y1 + y2) / 2, side, side, frame_w, frame_h, net)))
    return picked


def scan_tiles(frame_w: int, frame_h: int) -> list[Region]:
    """The rolling scan's tiles, row by row, each `SCAN_TILE` (or the frame, if smaller)."""
    tw, th = min(SCAN_TILE[0], frame_w), min(SCAN_TILE[1], frame_h)

    def starts(size: int, tile: int) -> list[int]:
        n = max(1, int(np.ceil((size - SCAN_OVERLAP) / (tile - SCAN_OVERLAP)))) if size > tile else 1
        return [int(round(i * (size - tile) / max(n - 1, 1))) for i in range(n)]

    width = _ceil32(tw * SCAN_ZOOM)
    return [Region(x, y, x + tw, y + th, width) for y in starts(frame_h, th) for x in starts(frame_w, tw)]


def global_shift(then: np.ndarray, now: np.ndarray) -> tuple[float, float]:
    """The camera's shift from `then` to `now` (small grey copies), by phase correlation."""
    # Sides cut to multiples of 8: on this OpenCV (5.0) a side like 44 or 45 biased the shift by
    # half a pixel, measured on a pure pan. The window removes the wrap-around edge.
    h, w = (max(8, v - v % 8) for v in then.shape)
    then, now = then[:h, :w], now[:h, :w]
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(then.astype(np.float32), now.astype(np.float32), window)
    return float(dx), float(dy)


def shrink(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape[:2]
    return cv2.resize(
        gray, (max(1, w // MOTION_STEP), max(1, h // MOTION_STEP)), interpolation=cv2.INTER_AREA
    )


def motion_regions(
    then_small: np.ndarray, now_small: np.ndarray, frame_w: int, frame_h: int, covered: list[Region]
) -> list[Region]:
    """Regions where the picture changed between two small grey copies (`shrink`), after the
    camera's global shift, outside the `covered` regions (known faces move too); none when most
    of the picture changed. Largest changes first."""
    if then_small.shape != now_small.shape:
        return []
    dx, dy = global_shift(then_small, now_small)
    h, w = then_small.shape[:2]
    shift = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    shifted = cv2.warpAffine(then_small, shift, (w, h), borderMode=cv2.BORDER_REPLICATE)
    moved: np.ndarray = (cv2.absdiff(shifted, now_small) > MOTION_THRESHOLD).astype(np.uint8)
    if moved.mean() > MOTION_MAX_FRACTION:
        return []
    for r in covered:
        moved[
            r.y1 // MOTION_STEP : -(-r.y2 // MOTION_STEP), r.x1 // MOTION_STEP : -(-r.x2 // MOTION_STEP)
        ] = 0
    moved = cv2.dilate(moved, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(moved, connectivity=8)
    blobs = sorted(stats[1:count].tolist(), key=lambda s: -s[cv2.CC_STAT_AREA])[:MOTION_MAX_REGIONS]
    regions = []
    for x, y, w, h, _ in blobs:
        side = int(min(MOTION_MAX_SIDE, max(w, h) * MOTION_STEP + SCAN_OVERLAP))
        cx, cy = (x + w / 2) * MOTION_STEP, (y + h / 2) * MOTION_STEP
        regions.append(_placed(cx, cy, side, side, frame_w, frame_h, _ceil32(side * SCAN_ZOOM)))
    return regions


def _inside(d: Detection, r: Region, frame_w: int, frame_h: int) -> bool:
    """False for a detection touching a border of `r` that is not the frame's own border."""
    x1, y1, x2, y2 = d.box
    return not (
        (r.x1 > 0 and x1 <= r.x1 + EDGE_PX)
        or (r.y1 > 0 and y1 <= r.y1 + EDGE_PX)
        or (r.x2 < frame_w and x2 >= r.x2 - EDGE_PX)
        or (r.y2 < frame_h and y2 >= r.y2 - EDGE_PX)
    )


def detect_in_regions(detector: FaceDetector, image: np.ndarray, regions: list[Region]) -> list[Detection]:
    """Detections of every region, in frame coordinates, before merging. Each crop is resized
    here to its network size, so regions of different frame sizes but one network size (all
    face regions) run in one batched call."""
    frame_h, frame_w = image.shape[:2]
    found: list[Detection] = []
    sized = []
    for r in regions:
        zoom = r.width / (r.x2 - r.x1)
        net_h = max(1, int(round((r.y2 - r.y1) * zoom)))
        crop = cv2.resize(image[r.y1 : r.y2, r.x1 : r.x2], (r.width, net_h), interpolation=cv2.INTER_LINEAR)
        sized.append((r, zoom, crop))

    def shape(item: tuple[Region, float, np.ndarray]) -> tuple[int, ...]:
        return item[2].shape

    for _, group in groupby(sorted(sized, key=shape), key=shape):
        batch = list(group)
        results = detector.detect_many([crop for _, _, crop in batch], batch[0][0].width)
        for (r, zoom, _), dets in zip(batch, results, strict=True):
            offset = np.array([r.x1, r.y1], dtype=np.float32)
            for d in dets:
                moved = Detection(
                    box=d.box / zoom + np.tile(offset, 2),
                    score=d.score,
                    landmarks=d.landmarks / zoom + offset,
                )
                if _inside(moved, r, frame_w, frame_h):
                    found.append(moved)
    return found


def merge(detections: list[Detection], max_faces: int) -> list[Detection]:
    """One detection per face, best score first, at most `max_faces`: a face seen by several
    regions (or by a region and the full pass) is kept once."""
    if not detections:
        return []
    boxes = np.stack([d.box for d in detections]).astype(np.float32)
    scores = np.array([d.score for d in detections], dtype=np.float32)
    return [detections[i] for i in nms(boxes, scores, MERGE_IOU)[:max_faces]]
