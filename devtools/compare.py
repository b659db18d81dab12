"""Side-by-side pictures for README: the pipeline's enhanced faces beside a bicubic enlargement of
the very same pixels.

    python -m devtools.compare demo docs/compare_demo.png      the demo camera's faces (the insets)
    python -m devtools.compare hallway docs/compare_hallway.png   enhance --mode upscale --upscale 2
                                                                   on the 1080p hallway clip

`demo`: after a warm-up, every face the pipeline enhanced in one frame, as LR crop (nearest),
bicubic enlargement of that crop, and the engine's output (what the dashboard's insets show).
`hallway`: one frame of `enhance --mode upscale --upscale 2` (native entry) beside the bicubic x2
enlargement of the source frame, cut around the largest faces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from streamer.config import AppConfig, DetectConfig, OutputConfig, SourceConfig
from streamer.pipeline import Pipeline
from streamer.run_loop import run_source
from streamer.sources import open_source
from streamer.types import FrameResult

HALLWAY = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "facenet_pytorch__video.mp4"
TILE = 128


def _last_result(cfg: AppConfig, source: SourceConfig, frames: int) -> FrameResult:
    pipe = Pipeline(cfg, "compare")
    src = open_source(source)
    src.start()
    kept: list[FrameResult] = []
    try:
        run_source(
            pipe, src, lambda r: kept.append(r) if r.faces else None, max_frames=frames, read_timeout=10.0
        )
    finally:
        src.stop()
        pipe.close()
    if not kept:
        raise RuntimeError("no frame with an enhanced face")
    return kept[-1]


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def demo(path: Path, frames: int = 45) -> None:
    cfg = AppConfig(mode="file", detect=DetectConfig(background=False), output=OutputConfig(mode="inset"))
    result = _last_result(cfg, SourceConfig(uri="demo"), frames)
    rows = []
    for face in sorted(result.faces, key=lambda f: f.track_id)[:6]:
        lr = face.crop.image
        size = (TILE, TILE)
        rows.append(
            np.concatenate(
                [
                    _label(cv2.resize(lr, size, interpolation=cv2.INTER_NEAREST), f"LR {lr.shape[0]} px"),
                    _label(cv2.resize(lr, size, interpolation=cv2.INTER_CUBIC), "bicubic"),
                    _label(cv2.resize(face.image, size, interpolation=cv2.INTER_AREA), "enhanced"),
                ],
                axis=1,
            )
        )
    pairs = [np.concatenate(rows[i : i + 2], axis=1) for i in range(0, len(rows) - 1, 2)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(pairs, axis=0))


def hallway(path: Path, frames: int = 20) -> None:
    cfg = AppConfig(
        mode="file", detect=DetectConfig(background=False), output=OutputConfig(mode="upscale", upscale=2)
    )
    result = _last_result(cfg, SourceConfig(uri=str(HALLWAY)), frames)
    frame = result.frame.image
    bic = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    steady = [t for t in result.tracks if t.hits >= 10]  # confirmed faces, not a one-off detection
    tracks = sorted(steady, key=lambda t: float(t.box[2] - t.box[0]), reverse=True)[:2]
    rows = []
    for t in tracks:
        cx, cy = (t.box[0] + t.box[2]), (t.box[1] + t.box[3])  # centre, in x2 pixels
        half = int(1.4 * float(t.box[3] - t.box[1]))
        x0, y0 = max(0, int(cx) - half), max(0, int(cy) - half)
        cut = [img[y0 : y0 + 2 * half, x0 : x0 + 2 * half] for img in (bic, result.output)]
        cut = [cv2.resize(c, (2 * TILE, 2 * TILE), interpolation=cv2.INTER_AREA) for c in cut]
        rows.append(
            np.concatenate(
                [_label(cut[0], "bicubic x2"), _label(cut[1], "facestream x2 (native entry)")], axis=1
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(rows, axis=0))


if __name__ == "__main__":
    what, out = sys.argv[1], Path(sys.argv[2])
    {"demo": demo, "hallway": hallway}[what](out)
    print(out)
