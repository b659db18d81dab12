"""The built-in `demo` source: a virtual camera filming a wall of prints of a real photo.

Needs no camera, network or download: the photo is scikit-image's `astronaut.png` (Eileen
Collins, NASA, public domain), which the scikit-image wheel, a dependency anyway, ships. Each
print is a contact sheet of six crops of it at different sizes, some mirrored, so a print holds
six faces like a group photo. The prints are small enough that faces in the output are 10-24 px
tall, the extreme face-super-resolution regime this project targets, and the camera pans along
the wall, zooms slowly and shakes slightly, so detection, tracking and temporal filtering all see
realistic motion. Every frame is a pure function of its index and the seed, and the true face
boxes are known (`faces_in_view`), so tests can check detection recall on it.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamer.config import SourceConfig
from streamer.sources.base import BaseSource, SourceError, SourceStats
from streamer.types import Frame

log = logging.getLogger(__name__)

# The face box (x1, y1, x2, y2) in astronaut.png's own pixels (512x512), measured once with
# CenterFace at threshold 0.5 (score 0.93): 119.6 px tall.
PHOTO_FACE_BOX = np.array([181.5, 58.2, 269.9, 177.8], np.float32)
# The contact sheet: 3x2 cells with white gutters, the same size as a 1280x886 group photo.
PRINT_SIZE = (1280, 886)
GUTTER = 8
# Per cell: the photo's scale (face heights 113.6-147.1 px), where the face sits in the cell
# (fraction of the free room, x then y) and whether the crop is mirrored.
CELLS = (
    (1.15, 0.30, 0.35, False),
    (0.95, 0.70, 0.55, True),
    (1.23, 0.50, 0.20, False),
    (1.00, 0.20, 0.70, True),
    (1.08, 0.80, 0.40, False),
    (1.20, 0.45, 0.60, True),
)
# Print pixels -> output pixels at the closest zoom: the tallest box becomes 147.1 * 0.155 = 22.8 px.
PRINT_SCALE = 0.155
# Farthest zoom, and the smallest per-print size factor: the shortest box becomes
# 113.6 * 0.155 * 0.70 * 0.92 = 11.3 px. So every face stays 11-23 px tall.
ZOOM_MIN = 0.70
PRINT_JITTER_MIN = 0.92
N_PRINTS = 8
PAN_SPEED = 0.05  # peak pan speed in output widths per second (64 px/s, ~2 px per frame at 720p30)


def photo_path() -> Path:
    """astronaut.png inside the installed scikit-image, found without importing it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("demo source needs scikit-image (its astronaut.png photo); reinstall facestream")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "astronaut.png"
    if not path.is_file():
        raise SourceError(f"demo source: {path} is missing; reinstall scikit-image")
    return path


def group_print() -> tuple[np.ndarray, np.ndarray]:
    """The contact sheet (BGR, PRINT_SIZE) and its six face boxes (6, 4) in its own pixels."""
    photo = cv2.imread(str(photo_path()), cv2.IMREAD_COLOR)
    if photo is None:
        raise SourceError("demo source: could not decode scikit-image's astronaut.png")
    width, height = PRINT_SIZE
    cw, ch = (width - 4 * GUTTER) // 3, (height - 3 * GUTTER) // 2
    sheet = np.full((height, width, 3), 245, np.uint8)
    boxes = []
    for i, (scale, fx, fy, mirrored) in enumerate(CELLS):
        big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        face = PHOTO_FACE_BOX * np.float32(scale)
        # The crop's origin: anywhere that keeps the whole face and stays inside the photo.
        lo_x, hi_x = max(0.0, face[2] - cw), min(face[0], big.shape[1] - cw)
        lo_y, hi_y = max(0.0, face[3] - ch), min(face[1], big.shape[0] - ch)
        ox, oy = round(lo_x + fx * (hi_x - lo_x)), round(lo_y + fy * (hi_y - lo_y))
        cell = big[oy : oy + ch, ox : ox + cw]
        box = face - np.array([ox, oy, ox, oy], np.float32)
        if mirrored:
            cell = cell[:, ::-1]
            box = np.array([cw - box[2], box[1], cw - box[0], box[3]], np.float32)
        x0, y0 = GUTTER + (i % 3) * (cw + GUTTER), GUTTER + (i // 3) * (ch + GUTTER)
        sheet[y0 : y0 + ch, x0 : x0 + cw] = cell
        boxes.append(box + np.array([x0, y0, x0, y0], np.float32))
    return sheet, np.stack(boxes)


@dataclass(frozen=True)
class CameraPose:
    cx: float
    cy: float
    zoom: float
    angle_deg: float
    shake_x: float
    shake_y: float


class Wall:
    """The world the camera films: a textured wall with a row of framed prints of `group_print`.

    World pixels equal output pixels at zoom 1. Print spacing follows the output width so that at
    720p at least one whole print (6 faces) is always in view.
    """

    def __init__(self, width: int, height: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        photo, photo_boxes = group_print()
        pw, ph = PRINT_SIZE[0] * PRINT_SCALE, PRINT_SIZE[1] * PRINT_SCALE
        self.spacing = max(pw + 48.0, 0.75 * width)
        margin_x = max(width / ZOOM_MIN, pw) / 2 + 64
        self.sway = 0.05 * height
        world_h = int(height / ZOOM_MIN + 2 * self.sway + 0.12 * height + ph + 64)
        world_w = int(2 * margin_x + (N_PRINTS - 1) * self.spacing + pw + 0.1 * width)
        self.image = _wall_texture(world_w, world_h, rng)
        self.x_range = (margin_x, world_w - margin_x)
        self.cy = world_h / 2
        boxes = []
        for i in range(N_PRINTS):
            s = PRINT_SCALE * rng.uniform(PRINT_JITTER_MIN, 1.0)
            w, h = round(PRINT_SIZE[0] * s), round(PRINT_SIZE[1] * s)
            cx = margin_x + i * self.spacing + rng.uniform(-0.05, 0.05) * self.spacing
            cy = self.cy + rng.uniform(-0.06, 0.06) * height
            x0, y0 = round(cx - w / 2), round(cy - h / 2)
            mirrored = i % 2 == 1
            print_img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
            if mirrored:
                print_img = print_img[:, ::-1]
            _hang(self.image, print_img, x0, y0)
            fb = photo_boxes * np.float32(w / PRINT_SIZE[0])
            if mirrored:
                fb = np.stack([w - fb[:, 2], fb[:, 1], w - fb[:, 0], fb[:, 3]], axis=1)
            boxes.append(fb + np.array([x0, y0, x0, y0], np.float32))
        self.face_boxes = np.concatenate(boxes).astype(np.float32)


def _wall_texture(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A painted-plaster wall: low-frequency blotches plus fine grain tiled from one patch."""
    coarse = rng.random((h // 160 + 2, w // 160 + 2), dtype=np.float32)
    blotch = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    base = np.array([150, 166, 178], np.float32)  # warm light grey, BGR
    img = base[None, None, :] + 24.0 * (blotch[..., None] - 0.5)
    grain = rng.normal(0.0, 3.0, (128, 128, 1)).astype(np.float32)
    img += np.tile(grain, (h // 128 + 1, w // 128 + 1, 1))[:h, :w]
    return np.clip(img, 0, 255).astype(np.uint8)


def _hang(wall: np.ndarray, print_img: np.ndarray, x0: int, y0: int) -> None:
    """Paste a print with a dark frame and a soft shadow, so it reads as an object on the wall."""
    h, w = print_img.shape[:2]
    border, off, pad = 3, 5, 24
    shadow = np.zeros((h + 2 * pad + off, w + 2 * pad + off), np.float32)
    shadow[pad - border + off : pad + h + border + off, pad - border + off : pad + w + border + off] = 0.45
    shadow = cv2.GaussianBlur(shadow, (0, 0), 4.0)
    region = wall[y0 - pad : y0 + h + pad + off, x0 - pad : x0 + w + pad + off]
    region[:] = (region * (1.0 - shadow[..., None])).astype(np.uint8)
    wall[y0 - border : y0 + h + border, x0 - border : x0 + w + border] = (38, 52, 70)
    wall[y0 : y0 + h, x0 : x0 + w] = print_img


class DemoSource(BaseSource):
    """Renders the wall through the virtual camera at demo_width x demo_height and demo_fps.

    Not `live`, a frame is rendered whenever `read()` is called (no frame skipped). Live, the
    source behaves like a camera: `read()` waits for the next frame time and, when the consumer
    is late, jumps to the current frame and counts the skipped ones as dropped.
    """

    def __init__(self, cfg: SourceConfig, live: bool = False) -> None:
        self.cfg = cfg
        self.name = cfg.display_name
        self.fps = cfg.demo_fps
        self.is_live = live
        self.stats = SourceStats()
        self.ended = False
        self.width, self.height = cfg.demo_width, cfg.demo_height
        self.total_frames = round(cfg.demo_seconds * cfg.demo_fps) if cfg.demo_seconds > 0 else 0
        self.wall: Wall | None = None
        self._motion = _Motion(cfg.demo_seed)
        self._next = 0
        self._delivered = 0
        self._t0 = 0.0
        self._stop = threading.Event()

    def start(self) -> None:
        if self.wall is None:
            t = time.perf_counter()
            self.wall = Wall(self.width, self.height, self.cfg.demo_seed)
            log.info(
                "demo source: wall of %d faces built in %.2f s",
                len(self.wall.face_boxes),
                time.perf_counter() - t,
            )
        if self.state != "live":
            # Resuming after stop() continues the timeline where it left off.
            self._t0 = time.monotonic() - self._next / self.fps
            self._stop.clear()
            self._set_state("live")

    def read(self, timeout: float | None = None) -> Frame | None:
        if self.wall is None:
            raise RuntimeError("demo source: call start() before read()")
        if self.ended or self._stop.is_set():
            return None
        n = self._next
        if self.is_live:
            now = time.monotonic()
            due = int((now - self._t0) * self.fps)
            if due < n:
                wait = self._t0 + n / self.fps - now
                if timeout is not None and wait > timeout:
                    self._stop.wait(timeout)
                    return None
                if self._stop.wait(wait):
                    return None
            else:
                self.stats.frames_dropped += due - n
                n = due
        if self.total_frames and n >= self.total_frames:
            self.ended = True
            self._set_state("ended")
            return None
        image = self.render(n)
        self._next = n + 1
        self.stats.frames_read += 1
        frame = Frame(
            image=image,
            index=self._delivered,
            pts=n / self.fps,
            capture_time=time.monotonic(),
        )
        self._delivered += 1
        return frame

    def stop(self) -> None:
        self._stop.set()
        if self.state == "live":
            self._set_state("stopped")

    def pose(self, n: int) -> CameraPose:
        assert self.wall is not None, "call start() first"
        return self._motion.pose(n / self.fps, self.wall, self.width)

    def matrix(self, n: int) -> np.ndarray:
        """The 2x3 affine from wall pixels to output pixels for frame `n`."""
        p = self.pose(n)
        a = math.radians(p.angle_deg)
        c, s = p.zoom * math.cos(a), p.zoom * math.sin(a)
        tx = self.width / 2 + p.shake_x - (c * p.cx - s * p.cy)
        ty = self.height / 2 + p.shake_y - (s * p.cx + c * p.cy)
        return np.array([[c, -s, tx], [s, c, ty]], np.float64)

    def render(self, n: int) -> np.ndarray:
        """Frame `n` as BGR uint8; deterministic for a given seed and size."""
        assert self.wall is not None, "call start() first"
        return cv2.warpAffine(
            self.wall.image,
            self.matrix(n),
            (self.width, self.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def faces_in_view(self, n: int) -> np.ndarray:
        """Ground-truth face boxes (K, 4) x1, y1, x2, y2 in frame `n`, only those wholly inside it."""
        assert self.wall is not None, "call start() first"
        b = self.wall.face_boxes
        corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], axis=1)  # (F, 4, 2)
        m = self.matrix(n)
        pts = corners @ m[:, :2].T + m[:, 2]
        boxes = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
        inside = (boxes[:, :2] >= 0).all(axis=1) & (boxes[:, 2] <= self.width) & (boxes[:, 3] <= self.height)
        return boxes[inside].astype(np.float32)


class _Motion:
    """Smooth, seeded camera motion: a ping-pong pan along the wall, slow sway and zoom, and a
    small shake made of a few incommensurate sines (no per-frame randomness, so any frame can
    be rendered on its own)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed + 7919)
        self.phase = rng.uniform(0, 2 * math.pi, 9)
        self.shake_f = rng.uniform(0.9, 6.0, 6)
        self.shake_a = np.array([0.6, 0.35, 0.2, 0.6, 0.35, 0.2])
        self.start = rng.uniform(0.0, 1.0)

    def pose(self, t: float, wall: Wall, width: int) -> CameraPose:
        x0, x1 = wall.x_range
        span = max(x1 - x0, 1.0)
        period = math.pi * span / (PAN_SPEED * width)  # cosine ping-pong whose peak speed is PAN_SPEED
        u = (1 - math.cos(2 * math.pi * (t / period + self.start / 2))) / 2
        cx = x0 + span * u
        cy = wall.cy + wall.sway * math.sin(2 * math.pi * t / 23.0 + self.phase[0])
        zoom = ZOOM_MIN + (1 - ZOOM_MIN) * (0.5 + 0.5 * math.sin(2 * math.pi * t / 17.0 + self.phase[1]))
        angle = 0.15 * math.sin(2 * math.pi * 0.7 * t + self.phase[2])
        sx = sum(
            a * math.sin(2 * math.pi * f * t + p)
            for a, f, p in zip(self.shake_a[:3], self.shake_f[:3], self.phase[3:6], strict=True)
        )
        sy = sum(
            a * math.sin(2 * math.pi * f * t + p)
            for a, f, p in zip(self.shake_a[3:], self.shake_f[3:], self.phase[6:9], strict=True)
        )
        return CameraPose(cx, cy, zoom, angle, sx, sy)
