"""Saying what an enhanced face is, wherever a person sees or keeps one.

An enhanced face is a reconstruction, not a photograph: the model's face prior fills in detail the
camera never recorded, and it can look convincing and still be wrong. So every output that shows
one carries that fact with it, in the form its reader can see: a corner label burnt into video
frames (it survives re-encoding, recording and re-streaming), a field in JSON metadata, and text
chunks in saved PNG files (read by image viewers and `exiftool`, kept by most copies).
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

NOTE = (
    "Enhanced faces are reconstructions by a face super-resolution model, not photographs: "
    "detail may be invented. Compare with the original before relying on one."
)
LABEL = "AI-ENHANCED FACES"
PNG_KEYWORD = "facestream:enhanced"
"""PNG text keyword marking a file as enhanced; `Description` carries the NOTE."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def label_frame(image: np.ndarray) -> None:
    """Write LABEL small in the bottom-left corner of a BGR frame, in place: white on a dark box,
    readable on any picture, about 2% of the frame's height. The top-left corner is the latency
    stamp's, the right edge the gallery's."""
    h, w = image.shape[:2]
    scale = max(0.3, h / 1800)
    thick = 1 if h < 1080 else 2
    (tw, th), base = cv2.getTextSize(LABEL, _FONT, scale, thick)
    pad = max(2, int(th * 0.4))
    x0, y1 = pad, h - pad
    x1, y0 = x0 + tw + 2 * pad, y1 - th - base - 2 * pad
    if x1 > w or y0 < 0:
        return
    roi = image[y0:y1, x0:x1]
    roi[:] = roi // 4
    cv2.putText(image, LABEL, (x0 + pad, y1 - pad - base), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


def metadata(engine: str) -> dict[str, object]:
    """The fields a JSON record of an enhanced face carries."""
    return {"enhanced": True, "engine": engine, "note": NOTE}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(image: np.ndarray, text: dict[str, str]) -> bytes:
    """`image` (BGR) as PNG with `text` as iTXt chunks (UTF-8) right after the header, where
    readers look first. OpenCV's encoder writes no text chunks, so they are spliced in here."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} image as PNG")
    data = buf.tobytes()
    ihdr_end = len(_PNG_SIGNATURE) + 8 + 13 + 4
    chunks = b"".join(
        _chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8"))
        for key, value in text.items()
    )
    return data[:ihdr_end] + chunks + data[ihdr_end:]


def enhanced_png(image: np.ndarray, engine: str) -> bytes:
    """An enhanced face as a PNG that says what it is."""
    return png_bytes(image, {PNG_KEYWORD: f"true; {engine}", "Description": NOTE})
