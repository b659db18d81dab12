"""The synthetic degradation pipeline: HR face -> tiny LR face the way cameras make them.

blur (random isotropic / anisotropic Gaussian kernel) -> downscale (random interpolation) ->
sensor noise (Gaussian, sometimes signal-dependent) -> compression: real H.264 (libx264 through
PyAV, several frames so most artifacts are P-frame ones, 4:2:0 chroma) or JPEG (OpenCV) at a
random quality. It bootstraps step 1 before the learned degradation generator takes over, and
its output alone is the "synthetic-only" ablation of the quality benchmark.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

log = logging.getLogger(__name__)


def have_pyav() -> bool:
    """PyAV is missing on some training machines (a bare GPU box); JPEG then stands in for H.264."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class DegradeSpec:
    """Ranges sampled per face (blur sigma is in LR pixels, so it means the same at every scale)."""

    blur_sigma: tuple[float, float] = (0.2, 1.2)
    anisotropic_p: float = 0.4
    noise_sigma: tuple[float, float] = (0.0, 8.0)
    poisson_p: float = 0.3
    h264_p: float = 0.5
    h264_crf: tuple[int, int] = (23, 40)
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)


TRAINING = DegradeSpec()
"""The wide ranges sampled while training."""
REALISTIC = DegradeSpec(
    blur_sigma=(0.4, 0.9), noise_sigma=(2.0, 5.0), h264_p=1.0, h264_crf=(26, 34), jpeg_p=0.0
)
"""The benchmark's fixed-range degradation: blur + noise + real H.264 on every face."""


def gaussian_kernel(
    rng: np.random.Generator, sigma_range: tuple[float, float], anisotropic_p: float, scale: float
) -> np.ndarray:
    """A normalised 2-D Gaussian kernel at HR resolution; `scale` converts LR sigmas to HR pixels."""
    s1 = rng.uniform(*sigma_range) * scale
    s2 = rng.uniform(*sigma_range) * scale if rng.random() < anisotropic_p else s1
    theta = rng.uniform(0, math.pi)
    radius = max(1, int(math.ceil(3 * max(s1, s2))))
    ax = np.arange(-radius, radius + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / max(s1, 1e-3)) ** 2 + (v / max(s2, 1e-3)) ** 2))
    return (k / k.sum()).astype(np.float32)


def h264_clip(frames: Sequence[np.ndarray], crf: int) -> list[np.ndarray]:
    """libx264 round trip of a short RGB clip (even sides; P-frames only, zero latency, one
    thread, as a live camera stream is coded): every decoded frame, in order."""
    import av

    h, w = frames[0].shape[:2]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 30)
    enc.thread_count = 1
    enc.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency", "bframes": "0"}
    packets = []
    for i, pic in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(pic, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    dec = av.CodecContext.create("h264", "r")
    decoded = []
    for p in packets:
        decoded.extend(dec.decode(p))
    decoded.extend(dec.decode(None))
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} of {len(frames)} frames")
    return [d.to_ndarray(format="rgb24") for d in decoded]


def h264_roundtrip(
    crops: np.ndarray, crf: int, frames: int = 3, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Encode a batch of RGB uint8 crops (N, s, s, 3) with libx264 and decode them back.

    The crops are tiled into one mosaic picture (even sides, as 4:2:0 needs) and encoded as a
    short sequence; the last decoded frame (a P-frame) is returned, as most faces in a live stream
    are. Frames before it carry fresh +-1 level noise so the encoder has a residual to code.
    """
    n, s = crops.shape[0], crops.shape[1]
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    w, h = max(16, cols * s + (cols * s) % 2), max(16, rows * s + (rows * s) % 2)
    mosaic = np.zeros((h, w, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        mosaic[r * s : (r + 1) * s, c * s : (c + 1) * s] = crops[i]
    rng = rng or np.random.default_rng(0)
    pics = [
        np.clip(mosaic.astype(np.int16) + rng.integers(-1, 2, mosaic.shape), 0, 255).astype(np.uint8)
        for _ in range(frames - 1)
    ]
    out_mosaic = h264_clip([*pics, mosaic], crf)[-1]
    out = np.empty_like(crops)
    for i in range(n):
        r, c = divmod(i, cols)
        out[i] = out_mosaic[r * s : (r + 1) * s, c * s : (c + 1) * s]
    return out


def jpeg_roundtrip(crop: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return decoded


_INTERPS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def degrade(
    hr: np.ndarray, size: int, rng: np.random.Generator, spec: DegradeSpec | None = None
) -> np.ndarray:
    """HR RGB uint8 faces (N, H, H, 3) -> LR uint8 faces (N, size, size, 3).

    One H.264 round trip per batch (one crf for the batch: one stream), JPEG per face. Without
    PyAV the H.264 share is JPEG-compressed instead (logged once; model cards say so).
    """
    spec = spec or TRAINING
    n, hsize = hr.shape[0], hr.shape[1]
    if size >= hsize:
        raise ValueError(f"LR size {size} must be smaller than the HR size {hsize}")
    factor = hsize / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        k = gaussian_kernel(rng, spec.blur_sigma, spec.anisotropic_p, factor)
        img = cv2.filter2D(hr[i].astype(np.float32), -1, k, borderType=cv2.BORDER_REFLECT)
        img = cv2.resize(img, (size, size), interpolation=_INTERPS[rng.integers(len(_INTERPS))])
        sigma = rng.uniform(*spec.noise_sigma)
        if rng.random() < spec.poisson_p:
            noise = rng.standard_normal(img.shape) * np.sqrt(np.maximum(img, 0) / 255.0) * sigma * 2.0
        else:
            noise = np.asarray(rng.standard_normal(img.shape) * sigma)
        if rng.random() < 0.3:
            noise = noise.mean(axis=2, keepdims=True).repeat(3, axis=2)  # luma-only noise
        out[i] = np.clip(img + noise, 0, 255).round().astype(np.uint8)
    use_h264 = rng.random() < spec.h264_p
    if use_h264 and _PYAV:
        return h264_roundtrip(out, int(rng.integers(spec.h264_crf[0], spec.h264_crf[1] + 1)), rng=rng)
    if use_h264:
        _warn_no_pyav()
    for i in range(n):
        if use_h264 or rng.random() < spec.jpeg_p:
            out[i] = jpeg_roundtrip(out[i], int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1)))
    return out


_PYAV = have_pyav()
_warned = False


def _warn_no_pyav() -> None:
    global _warned
    if not _warned:
        log.warning("PyAV is not installed: JPEG stands in for H.264 in the synthetic degradations")
        _warned = True
