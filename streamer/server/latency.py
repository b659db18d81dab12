"""Frame stamps for glass-to-glass latency, and a bounded log of per-frame timestamps.

A stamp is a row of black/white 8 px cells drawn into the top-left corner of a *copy* of the
picture that is about to be encoded (only when `server.stamp_frames` is on). The receiving
peer reads the frame number back from the decoded picture, so latency is measured on what a
viewer actually sees, through the real encoder, RTP, jitter buffer and decoder, with no
assumption about RTP timestamps. 8 px cells aligned to the codec's block grid stay readable at
every bitrate aiortc can be given; the check bits reject a misread.

Layout: 2 marker cells (white, black), 24 data bits (frame index mod 2**24, MSB first), 6 check
bits (a multiplicative hash of the index), 32 cells = 256 x 8 px.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

CELL = 8
DATA_BITS = 24
CHECK_BITS = 6
CELLS = 2 + DATA_BITS + CHECK_BITS
STAMP_WIDTH = CELL * CELLS
STAMP_HEIGHT = CELL
INDEX_MASK = (1 << DATA_BITS) - 1
"""Stamps carry the frame index modulo 2**24 (over 6 days at 30 fps); logs key frames the same way."""


def _check_value(value: int) -> int:
    return ((value * 2654435761) >> 20) & ((1 << CHECK_BITS) - 1)


def _bits(index: int) -> list[int]:
    value = index & INDEX_MASK
    data = [(value >> (DATA_BITS - 1 - i)) & 1 for i in range(DATA_BITS)]
    check = _check_value(value)
    tail = [(check >> (CHECK_BITS - 1 - i)) & 1 for i in range(CHECK_BITS)]
    return [1, 0, *data, *tail]


def draw_stamp(image: np.ndarray, index: int) -> None:
    """Write `index` into the top-left corner of `image` (uint8 HxWx3 or HxW), in place."""
    h, w = image.shape[:2]
    if w < STAMP_WIDTH or h < STAMP_HEIGHT:
        raise ValueError(f"frame {w}x{h} is too small for a {STAMP_WIDTH}x{STAMP_HEIGHT} latency stamp")
    for i, bit in enumerate(_bits(index)):
        image[:STAMP_HEIGHT, i * CELL : (i + 1) * CELL] = 255 if bit else 0


def read_stamp(luma: np.ndarray) -> int | None:
    """Frame index (mod 2**24) from a decoded picture's luma plane (or BGR image), or None
    when no valid stamp is there."""
    if luma.ndim == 3:
        luma = luma.mean(axis=2)
    if luma.shape[0] < STAMP_HEIGHT or luma.shape[1] < STAMP_WIDTH:
        return None
    strip = np.asarray(luma[2 : CELL - 2, :STAMP_WIDTH], dtype=np.float32)
    cells = strip.reshape(strip.shape[0], CELLS, CELL)[:, :, 2 : CELL - 2].mean(axis=(0, 2))
    bits = (cells > 127.5).astype(int).tolist()
    if bits[0] != 1 or bits[1] != 0:
        return None
    value = 0
    for b in bits[2 : 2 + DATA_BITS]:
        value = (value << 1) | b
    check = 0
    for b in bits[2 + DATA_BITS :]:
        check = (check << 1) | b
    return value if check == _check_value(value) else None


def read_stamp_from_frame(frame: object) -> int | None:
    """Read the stamp of a decoded `av.VideoFrame` touching only the rows it needs (planar
    YUV: plane 0 is luma), so a measuring viewer adds next to no delay of its own."""
    plane = frame.planes[0]  # type: ignore[attr-defined]
    width = frame.width  # type: ignore[attr-defined]
    if frame.format.name not in ("yuv420p", "yuvj420p", "nv12", "yuv422p", "yuv444p"):  # type: ignore[attr-defined]
        return read_stamp(frame.to_ndarray(format="gray"))  # type: ignore[attr-defined]
    rows = np.frombuffer(plane, dtype=np.uint8, count=plane.line_size * STAMP_HEIGHT)
    luma = rows.reshape(STAMP_HEIGHT, plane.line_size)[:, :width]
    return read_stamp(luma)


class LatencyLog:
    """Timestamps (time.monotonic seconds) and stage durations per frame index, for the last
    `capacity` frames. Written by the camera thread and the event loop, read by a benchmark."""

    def __init__(self, capacity: int = 4000, keep_images: bool = False) -> None:
        self._capacity = capacity
        self._keep_images = keep_images
        self._entries: OrderedDict[int, dict[str, float]] = OrderedDict()
        self._images: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def mark(self, index: int, values: dict[str, float], first_only: bool = False) -> None:
        """Record `values` for frame `index`; with `first_only`, keys already set are kept (the
        first viewer's send time, not the last one's)."""
        with self._lock:
            entry = self._entries.get(index)
            if entry is None:
                entry = self._entries[index] = {}
                while len(self._entries) > self._capacity:
                    self._entries.popitem(last=False)
            for key, value in values.items():
                if first_only and key in entry:
                    continue
                entry[key] = value

    def keep_image(self, kind: str, index: int, image: np.ndarray) -> None:
        """Keep what was sent, so a receiver can compute the codec's PSNR against it."""
        if not self._keep_images:
            return
        with self._lock:
            self._images[(kind, index)] = image
            while len(self._images) > 2 * 300:
                self._images.popitem(last=False)

    def image(self, kind: str, index: int) -> np.ndarray | None:
        with self._lock:
            return self._images.get((kind, index))

    def get(self, index: int) -> dict[str, float]:
        with self._lock:
            return dict(self._entries.get(index, {}))
