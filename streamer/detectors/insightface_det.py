"""Detectors given as ONNX files or InsightFace model packs (SCRFD, RetinaFace layouts).

Loaded through `insightface.model_zoo.get_model` with an explicit file path and the CPU
provider only, which never downloads: a name that is not an existing file or folder is
rejected by `build_detector` before InsightFace sees it. Our session options (thread count,
spinning off) are passed as `sess_options`; InsightFace keeps them when `prepare(ctx_id=-1)`
resets the providers and when it builds per-resolution sessions for dynamic-shape models.

An .onnx file with CenterFace's four heads is routed to our CenterFace decoder instead, and one
with YuNet's twelve to OpenCV's YuNet (yunet.py), so `--detector some/centerface.onnx` or
`--detector yunet_s_640_640.onnx` work as expected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamer.config import DetectConfig
from streamer.detectors.base import ACCEPTED, CapLogger, DetectorError, FaceDetector, check_frame, finalize
from streamer.detectors.centerface import (
    CenterFaceDetector,
    is_centerface_layout,
    network_size,
    session_options,
)
from streamer.types import Detection

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

KEYPOINT_LAYOUTS = (9, 15)
"""Output counts of InsightFace detectors with 5-point landmarks (3 or 5 strides x score,
box, keypoints); the 6- and 10-output variants have no landmarks, which alignment needs."""


def _pick_pack_model(folder: Path) -> Path:
    """The detector of an InsightFace model pack folder (`det_10g.onnx`, `det_500m.onnx`, ...),
    or failing that a file named like a detector (`scrfd_*`, `*retinaface*`)."""
    found = sorted(folder.glob("det_*.onnx")) or sorted(
        p for p in folder.glob("*.onnx") if any(k in p.stem.lower() for k in ("det", "scrfd", "retinaface"))
    )
    if not found:
        onnx_files = sorted(p.name for p in folder.glob("*.onnx"))
        raise DetectorError(
            f"{folder} holds no detector (det_*.onnx); found {onnx_files or 'no .onnx files'}. Use {ACCEPTED}"
        )
    if len(found) > 1:
        log.info("%s has several detectors %s, using %s", folder, [p.name for p in found], found[0].name)
    return found[0]


def _output_count(path: Path) -> tuple[int, onnx.ModelProto]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise DetectorError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}); use {ACCEPTED}"
        ) from None
    return len(model.graph.output), model


def load_onnx_detector(path: Path, cfg: DetectConfig) -> FaceDetector:
    """A detector from an existing .onnx file or model pack folder; DetectorError otherwise."""
    if path.is_dir():
        path = _pick_pack_model(path)
    if path.suffix.lower() != ".onnx":
        raise DetectorError(f"detector file {path} is not an .onnx file; use {ACCEPTED}")
    n_outputs, model = _output_count(path)
    if is_centerface_layout(model):
        return CenterFaceDetector(cfg, model_path=path)
    from streamer.detectors.yunet import YuNetDetector, is_yunet_layout

    if is_yunet_layout(model):
        return YuNetDetector(path, cfg)
    if n_outputs not in KEYPOINT_LAYOUTS:
        hint = (
            " (a detector without 5-point landmarks, which alignment needs)" if n_outputs in (6, 10) else ""
        )
        raise DetectorError(
            f"{path} is not a supported face detector: its graph has {n_outputs} outputs{hint}; "
            "expected an SCRFD/RetinaFace model with keypoints (9 or 15 outputs), CenterFace (4) "
            "or YuNet (12)"
        )
    return InsightFaceDetector(path, cfg)


class InsightFaceDetector:
    """An InsightFace SCRFD-family detector on the CPU provider.

    Models with a fixed input (e.g. 640x640) letterbox every frame into it; dynamic models run at
    `input_width` wide with the frame's aspect, like CenterFace. `max_num` of InsightFace's
    `detect` ranks faces by size and closeness to the centre, not by score, so it is left at 0
    and `finalize` applies our score-ranked `max_faces` instead.
    """

    def __init__(self, path: Path, cfg: DetectConfig) -> None:
        try:
            from insightface.model_zoo import get_model
        except ModuleNotFoundError:
            raise DetectorError(
                f"{path.name}: InsightFace detectors need the insightface package, which facestream "
                "does not install (it requires opencv-python, which clashes with the headless OpenCV): "
                "pip install --no-deps insightface==2.1"
            ) from None
        self.cfg = cfg
        self.path = path
        self.name = f"insightface:{path.stem}"
        try:
            model = get_model(
                str(path), providers=["CPUExecutionProvider"], sess_options=session_options(cfg.threads)
            )
        except Exception as exc:
            raise DetectorError(f"InsightFace cannot load {path}: {type(exc).__name__}: {exc}") from None
        if (
            model is None
            or getattr(model, "taskname", None) != "detection"
            or not getattr(model, "use_kps", False)
        ):
            raise DetectorError(
                f"{path} is not an InsightFace face detector with landmarks ({type(model).__name__})"
            )
        model.prepare(ctx_id=-1, det_thresh=cfg.threshold)
        self.model = model
        self.static_size: tuple[int, int] | None = model.static_input_size
        self._on_cap = CapLogger(self.name)
        log.info(
            "InsightFace detector %s, input %s, %d thread(s)",
            path,
            self.static_size or "dynamic",
            cfg.threads,
        )

    def detect_many(self, images: list[np.ndarray], width: int) -> list[list[Detection]]:
        """One call per image: InsightFace's `detect` takes one picture at a time."""
        return [self.detect(image, width) for image in images]

    def detect(self, image: np.ndarray, width: int | None = None) -> list[Detection]:
        """`width` applies to dynamic-shape models; fixed-input ones letterbox into their size."""
        check_frame(image)
        if self.static_size is None:
            net_w, net_h, _, _ = network_size(image.shape[1], image.shape[0], width or self.cfg.input_width)
            size: tuple[int, int] | None = (net_w, net_h)
        else:
            size = None
        try:
            det, kps = self.model.detect(image, input_size=size, max_num=0, det_thresh=self.cfg.threshold)
        except Exception as exc:
            raise DetectorError(
                f"{self.name} failed on a {image.shape[1]}x{image.shape[0]} frame: {exc}"
            ) from None
        if kps is None or len(det) == 0:
            empty = np.zeros((0, 4), np.float32)
            return finalize(
                empty,
                np.zeros(0, np.float32),
                np.zeros((0, 5, 2), np.float32),
                self.cfg,
                image.shape,
                self._on_cap,
            )
        return finalize(det[:, :4], det[:, 4], kps.reshape(-1, 5, 2), self.cfg, image.shape, self._on_cap)
