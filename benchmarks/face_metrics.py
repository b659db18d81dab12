"""What the quality benchmarks share: ONNX sessions on image batches, the metrics against ground
truth (PSNR, SSIM, dlib identity) and the temporal ones (frame change, flicker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAME_PERSON = 0.6
"""dlib's own threshold: embeddings closer than this (euclidean) are the same person."""


class Onnx:
    """One ONNX Runtime session on float32 NCHW [0, 1] RGB arrays."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        from engines.backends.onnxruntime_backend import cpu_graph  # the graph the engine runs

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(cpu_graph(path), so, providers=["CPUExecutionProvider"])
        self.inp = self.sess.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.inp: np.ascontiguousarray(x, dtype=np.float32)})[0]


def to_nchw(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0


def to_nhwc(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255.0).round().astype(np.uint8).transpose(0, 2, 3, 1)


def bicubic(images: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) for im in images])


class Identity:
    """dlib's face embeddings (128-d) on aligned 128 px faces."""

    def __init__(self) -> None:
        import warnings

        import dlib

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import face_recognition_models as frm
        self.dlib = dlib
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        # The template puts InsightFace's 112 px face box at 1/1.5 of the crop, centred.
        self.box = dlib.rectangle(21, 21, 107, 107)

    def landmarks(self, hr: np.ndarray) -> Any:
        return self.shape(np.ascontiguousarray(hr), self.box)

    def embed(self, img: np.ndarray, shape: Any) -> np.ndarray:
        return np.asarray(self.net.compute_face_descriptor(np.ascontiguousarray(img), shape, 0))


def metrics(
    hr: np.ndarray, out: np.ndarray, ident: Identity, shapes: list[Any], hr_emb: list[np.ndarray]
) -> dict[str, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = [peak_signal_noise_ratio(h, o, data_range=255) for h, o in zip(hr, out, strict=False)]
    ssim = [
        structural_similarity(h, o, channel_axis=2, data_range=255) for h, o in zip(hr, out, strict=False)
    ]
    cos, same = [], []
    for o, sh, e in zip(out, shapes, hr_emb, strict=False):
        f = ident.embed(o, sh)
        cos.append(float(np.dot(e, f) / (np.linalg.norm(e) * np.linalg.norm(f) + 1e-12)))
        same.append(float(np.linalg.norm(e - f) < SAME_PERSON))
    return {
        "psnr": float(np.mean(psnr)),
        "ssim": float(np.mean(ssim)),
        "identity": float(np.mean(cos)),
        "same_person": float(np.mean(same)),
    }


def frame_change(frames: np.ndarray) -> float:
    return float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean())


def flicker(frames: np.ndarray, hrs: np.ndarray) -> float:
    """Frame-to-frame change not explained by the true motion: mean |d(out) - d(HR)|."""
    d_out = np.diff(frames.astype(np.float32), axis=0)
    d_hr = np.diff(hrs.astype(np.float32), axis=0)
    return float(np.abs(d_out - d_hr).mean())
