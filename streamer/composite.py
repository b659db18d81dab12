"""Putting enhanced faces back where a person can see them.

An enhanced face pasted at its original 16 px size shows nothing new, so every mode shows the
detail at a larger scale: `upscale` renders the whole frame k times larger and pastes each face
through the exact inverse of its alignment warp; `inset` draws an enlarged face beside each small
one; `gallery` adds a side strip with the newest enhanced face of every track. Pastes are
feathered (a raised-cosine alpha ramp) so no seam shows. Pure numpy/OpenCV, no state but the
gallery's last face per track.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from streamer.align import inverse_matrix
from streamer.types import EnhancedFace

GALLERY_TILE = 128
GALLERY_LABEL = 18
INSET_SIZE = 96


@lru_cache(maxsize=16)
def feather_mask(size: int, feather: float) -> np.ndarray:
    """(size, size) float32 alpha: 1 inside, raised-cosine ramp to 0 over `feather` of the side."""
    ramp = max(1, int(round(size * feather)))
    x = np.ones(size, dtype=np.float32)
    t = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    edge = 0.5 - 0.5 * np.cos(np.pi * t)
    x[:ramp] = edge
    x[size - ramp :] = edge[::-1]
    mask = np.outer(x, x)
    mask.setflags(write=False)
    return mask


def paste_face(canvas: np.ndarray, face: np.ndarray, matrix: np.ndarray, feather: float) -> None:
    """Warp `face` into `canvas` (in place) with the 2x3 crop->canvas `matrix`, feathered.

    Only the face's bounding rectangle is warped, which keeps the cost per face independent of
    the frame size.
    """
    h, w = canvas.shape[:2]
    n = face.shape[0]
    corners = np.array([[0, 0, 1], [n, 0, 1], [0, n, 1], [n, n, 1]], dtype=np.float64) - [0.5, 0.5, 0]
    pts = corners @ matrix.T
    x0 = max(0, int(np.floor(pts[:, 0].min())))
    y0 = max(0, int(np.floor(pts[:, 1].min())))
    x1 = min(w, int(np.ceil(pts[:, 0].max())) + 1)
    y1 = min(h, int(np.ceil(pts[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    m = matrix.copy()
    m[0, 2] -= x0
    m[1, 2] -= y0
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(feather_mask(n, feather), m, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    roi = canvas[y0:y1, x0:x1]
    a = alpha[..., None]
    roi[:] = (warped.astype(np.float32) * a + roi.astype(np.float32) * (1.0 - a) + 0.5).astype(np.uint8)


def compose_upscale(image: np.ndarray, faces: list[EnhancedFace], k: int, feather: float) -> np.ndarray:
    h, w = image.shape[:2]
    out = cv2.resize(image, (w * k, h * k), interpolation=cv2.INTER_LINEAR) if k != 1 else image.copy()
    for f in faces:
        m = inverse_matrix(f.crop.matrix, f.crop.size, f.image.shape[0], frame_scale=k)
        paste_face(out, f.image, m, feather)
    return out


def _face_box(face: EnhancedFace) -> tuple[float, float, float, float]:
    inv = cv2.invertAffineTransform(face.crop.matrix)
    s = face.crop.size
    pts = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], dtype=np.float64) @ inv.T
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _overlaps(a: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]]) -> bool:
    return any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3] for b in boxes)


def _place_inset(
    box: tuple[float, float, float, float], size: int, w: int, h: int, taken: list[tuple[int, int, int, int]]
) -> tuple[int, int] | None:
    """Top-left corner for an inset near `box` that covers no face and no other inset: rings of
    candidate spots further and further out, right side first. None when the frame is full."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
    for ring in range(6):
        reach = 6 + ring * (size + 6)
        for dx, dy in ((1, 0), (-1, 0), (0, -1), (0, 1), (1, -1), (-1, -1), (1, 1), (-1, 1)):
            tx = cx + dx * (half_w + reach + size / 2) - size / 2
            ty = cy + dy * (half_h + reach + size / 2) - size / 2
            if dx == 0:
                tx = cx - size / 2
            if dy == 0:
                ty = cy - size / 2
            rect = (int(tx), int(ty), int(tx) + size, int(ty) + size)
            if rect[0] < 0 or rect[1] < 0 or rect[2] > w or rect[3] > h:
                continue
            if not _overlaps(rect, taken):
                return rect[0], rect[1]
    return None


def compose_inset(image: np.ndarray, faces: list[EnhancedFace], feather: float) -> np.ndarray:
    """Each face gets an enlarged copy near it, framed and joined to the face by a line, so an
    operator sees which face it belongs to. Insets never cover a face or each other; a face with
    no free spot left gets none (the gallery still shows it)."""
    out = image.copy()
    h, w = out.shape[:2]
    size = min(INSET_SIZE, h // 3, w // 4)
    boxes = [_face_box(f) for f in faces]
    taken = [(int(b[0]), int(b[1]), int(np.ceil(b[2])), int(np.ceil(b[3]))) for b in boxes]
    for f, box in sorted(zip(faces, boxes, strict=True), key=lambda fb: fb[1][0]):
        spot = _place_inset(box, size, w, h, taken)
        if spot is None:
            continue
        tx, ty = spot
        taken.append((tx - 2, ty - 2, tx + size + 2, ty + size + 2))
        tile = cv2.resize(f.image, (size, size), interpolation=cv2.INTER_AREA)
        x0, y0, x1, y1 = box
        cv2.line(
            out, (int((x0 + x1) / 2), int((y0 + y1) / 2)), (tx + size // 2, ty + size // 2), (0, 200, 255), 1
        )
        out[ty : ty + size, tx : tx + size] = tile
        cv2.rectangle(out, (tx - 1, ty - 1), (tx + size, ty + size), (0, 200, 255), 1)
    return out


class Gallery:
    """The newest enhanced face of each live track, for the side strip and the dashboard."""

    def __init__(self) -> None:
        self.latest: dict[int, np.ndarray] = {}

    def update(self, faces: list[EnhancedFace]) -> None:
        for f in faces:
            self.latest[f.track_id] = f.image

    def forget(self, track_ids: list[int]) -> None:
        for t in track_ids:
            self.latest.pop(t, None)

    def strip(self, height: int) -> np.ndarray:
        """A (height, tile + 16, 3) strip: newest tracks first, each labelled with its id."""
        tile = GALLERY_TILE
        width = tile + 16
        strip = np.full((height, width, 3), 24, dtype=np.uint8)
        y = 8
        for track_id in sorted(self.latest, reverse=True):
            if y + GALLERY_LABEL + tile > height:
                break
            cv2.putText(
                strip,
                f"track {track_id}",
                (8, y + 13),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (220, 220, 220),
                1,
                cv2.LINE_AA,
            )
            face = self.latest[track_id]
            if face.shape[0] != tile:
                face = cv2.resize(face, (tile, tile), interpolation=cv2.INTER_AREA)
            strip[y + GALLERY_LABEL : y + GALLERY_LABEL + tile, 8 : 8 + tile] = face
            y += GALLERY_LABEL + tile + 8
        return strip


def compose_gallery(image: np.ndarray, gallery: Gallery) -> np.ndarray:
    return np.concatenate([image, gallery.strip(image.shape[0])], axis=1)


def output_size(width: int, height: int, mode: str, k: int) -> tuple[int, int]:
    """(width, height) of the composited frame for a source of width x height."""
    if mode == "upscale":
        return width * k, height * k
    if mode == "gallery":
        return width + GALLERY_TILE + 16, height
    return width, height
