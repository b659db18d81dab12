"""Face super-resolution quality on the held-out test splits (engines/splits/celeba_test.txt and
allage_test.txt, each reported on its own: CelebA's 128 px targets are 1.5x upscales, All-Age-Faces'
are true downscales).

Each HR test face (128 px, aligned with the project's template) is degraded realistically to
s px (Gaussian blur, sensor noise, real H.264 through PyAV: engines.data.degrade.REALISTIC, fixed
seed) at x4 (32 px), x8 (16 px) and x16 (8 px), then brought back to 128 px by:

  * bicubic                    plain bicubic upscale (the floor)
  * step1 + bicubic            our step 1 alone (LR -> 64 px MR), bicubic to 128 px
  * two-step (synthetic s1)    the ablation: step 1 trained on synthetic degradations only, + step 2
  * one-step                   the ablation: LR -> 128 px in one net of the same MAC cost
  * two-step (ours)            step 1 + step 2, latent pulled toward the prior's mean (--prior-strength)

Metrics against the HR face: PSNR and SSIM (scikit-image) and identity similarity: the cosine of
dlib's 128-d face embeddings (face_recognition_models' ResNet with its 5-point shape predictor;
landmarks found on the HR face are used for both images, so only the pixels differ).

Temporal stability: synthetic sequences of one face with sub-pixel jitter and fresh noise and
H.264 per frame; the mean absolute frame-to-frame change of the 128 px output (0-255), with and
without track-level latent interpolation (engines/latent.py). The HR row is the change the
jitter itself causes (the floor a perfect, stable method would show).

Step 2 alone: the same faces degraded to 64 px (what a face that is natively ~64 px in the frame
gives the pipeline), brought to 128 px by bicubic and by step 2 alone.

Track histories (where a multi-frame step 1, `step1_x<f>_<variant>_k<K>`, is shipped): each face
through a video-coded clip (engines.data.video_degrade, the training pool's recipe with its own
seed): bicubic and the single-frame model restore the newest frame, the K-frame models see the
last K frames of the clip as well.

All models run through ONNX Runtime from engines/weights (ablations from engines/weights/ablations).

INT8: where the variant has int8 graphs (`run.py train quantize`), step 1 + bicubic, the two-step
model and step 2 alone run again on their int8 twins over the same LR faces, each with its loss
against its fp32 row (PSNR, SSIM) and its PSNR against the fp32 output itself.

    python run.py bench quality [--quick] [--limit N] [--json F] [--plot F] [--cards]
    python run.py bench quality --video     real talking-head video with ground truth
                                            (benchmarks/quality_video.py)
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks import quality_video
from benchmarks.face_metrics import (
    SAME_PERSON,
    Identity,
    Onnx,
    bicubic,
    flicker,
    frame_change,
    metrics,
    to_nchw,
    to_nhwc,
)
from benchmarks.output import write_json
from engines.data.degrade import REALISTIC, degrade
from engines.latent import TemporalLatent, interpolate_code

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "engines" / "weights"
SCALES = {4: 32, 8: 16, 16: 8}
JITTER = 0.25
"""Per-frame motion of the temporal test, in LR pixels (sub-pixel)."""
METHODS = ("bicubic", "step1 + bicubic", "two-step (synthetic s1)", "one-step", "two-step (ours)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="16 faces, 2 sequences: a smoke run (seconds)")
    p.add_argument("--limit", type=int, default=200, help="test faces per set (the splits have 500 / 399)")
    p.add_argument("--sets", default="celeba,allage", help="comma list of test sets (datasets)")
    p.add_argument("--variant", choices=("fast", "quality"), default="fast")
    p.add_argument("--scales", default="4,8,16", help="comma list of factors")
    p.add_argument("--prior-strength", type=float, default=0.15, help="toward-mean interpolation, 0..1")
    p.add_argument("--sequences", type=int, default=8, help="faces for the temporal test")
    p.add_argument("--frames", type=int, default=16, help="frames per temporal sequence")
    p.add_argument("--weights", type=Path, default=WEIGHTS)
    p.add_argument("--cache", type=Path, default=ROOT / "cache" / "data")
    p.add_argument("--data", type=Path, help="folder holding the sets (default ../shared/data/faces)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=ROOT / "out" / "bench" / "quality.json")
    p.add_argument(
        "--plot",
        type=Path,
        default=ROOT / "out" / "bench" / "quality.png",
        help="figure path; one figure per set, named <stem>_<set><suffix>",
    )
    p.add_argument("--cards", action="store_true", help="write the results into the models' MODEL_CARD.md")
    p.add_argument(
        "--video",
        action="store_true",
        help="the real-video benchmark with ground truth (benchmarks/quality_video.py) instead",
    )
    quality_video.add_arguments(p)


class Models:
    """The ONNX graphs of one variant that exist in the weights folder; absent ones give None.
    `suffix` "_int8" takes their int8 twins (model_int8.onnx, ...)."""

    def __init__(self, weights: Path, variant: str, threads: int, suffix: str = "") -> None:
        self.weights, self.variant, self.threads, self.suffix = weights, variant, threads, suffix
        s2 = weights / f"step2_{variant}"
        if not (s2 / f"encoder{suffix}.onnx").exists():
            raise FileNotFoundError(
                f"no step2_{variant} in {weights}; train it (`python run.py train step2 "
                f"--variant {variant}`) or pass --weights"
            )
        self.encoder = Onnx(s2 / f"encoder{suffix}.onnx", threads)
        self.decoder = Onnx(s2 / f"decoder{suffix}.onnx", threads)
        self.mean = np.load(s2 / "latent_mean.npy")

    def _get(self, rel: str) -> Onnx | None:
        path = self.weights / rel / f"model{self.suffix}.onnx"
        return Onnx(path, self.threads) if path.exists() else None

    def step1(self, scale: int, synthetic: bool = False, frames: int = 1) -> Onnx | None:
        name = f"step1_x{scale}_{self.variant}" + (f"_k{frames}" if frames > 1 else "")
        return self._get(f"ablations/{name}_synth" if synthetic else name)

    def onestep(self, scale: int) -> Onnx | None:
        return self._get(f"ablations/onestep_x{scale}_{self.variant}")

    def prior(
        self, mr: np.ndarray, strength: float, temporal: TemporalLatent | None = None, track: int = 0
    ) -> np.ndarray:
        z = interpolate_code(self.encoder(mr), self.mean, strength, temporal, [track] if temporal else None)
        return self.decoder(z)


def run_methods(models: Models, scale: int, lr: np.ndarray, strength: float) -> dict[str, np.ndarray | None]:
    """uint8 RGB 128 px outputs of every method for a batch of LR faces (None: model missing)."""
    x = to_nchw(lr)
    out: dict[str, np.ndarray | None] = {m: None for m in METHODS}
    out["bicubic"] = bicubic(lr, 128)
    s1 = models.step1(scale)
    if s1 is not None:
        mr = s1(x)
        out["step1 + bicubic"] = bicubic(to_nhwc(mr), 128)
        out["two-step (ours)"] = to_nhwc(models.prior(mr, strength))
    s1s = models.step1(scale, synthetic=True)
    if s1s is not None:
        out["two-step (synthetic s1)"] = to_nhwc(models.prior(s1s(x), strength))
    one = models.onestep(scale)
    if one is not None:
        out["one-step"] = to_nhwc(one(x))
    return out


def impostor_cosine(hr_emb: list[np.ndarray]) -> float:
    """Mean cosine between different test people: the floor the identity column sits on."""
    e = np.stack(hr_emb)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = e @ e.T
    return float(sim[~np.eye(len(e), dtype=bool)].mean())


def jitter_sequence(
    hr: np.ndarray, scale_in: int, frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One face moved by sub-pixel amounts (<= JITTER LR px) per frame, each frame degraded anew.
    Returns (HR frames, LR frames)."""
    factor = 128 / scale_in
    hrs = []
    for _ in range(frames):
        dx, dy = rng.uniform(-JITTER, JITTER, 2) * factor
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        hrs.append(cv2.warpAffine(hr, m, (128, 128), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    hrs_a = np.stack(hrs)
    lrs = np.concatenate([degrade(hrs_a[i : i + 1], scale_in, rng, REALISTIC) for i in range(frames)])
    return hrs_a, lrs


def temporal(
    models: Models, scale: int, faces: np.ndarray, frames: int, strength: float, rng: np.random.Generator
) -> dict[str, dict[str, float]]:
    s1 = models.step1(scale)
    s = SCALES[scale]
    rows: dict[str, list[tuple[float, float]]] = {
        "HR (jitter itself)": [],
        "bicubic": [],
        "two-step, no smoothing": [],
        "two-step, exponential 0.5": [],
        "two-step, window 4": [],
    }
    for face in faces:
        hrs, lrs = jitter_sequence(face, s, frames, rng)
        rows["HR (jitter itself)"].append((frame_change(hrs), 0.0))
        bic = bicubic(lrs, 128)
        rows["bicubic"].append((frame_change(bic), flicker(bic, hrs)))
        if s1 is None:
            continue
        mr = s1(to_nchw(lrs))
        plain = to_nhwc(models.prior(mr, strength))
        rows["two-step, no smoothing"].append((frame_change(plain), flicker(plain, hrs)))
        for key, tl in (
            ("two-step, exponential 0.5", TemporalLatent("exponential", alpha=0.5)),
            ("two-step, window 4", TemporalLatent("window", window=4)),
        ):
            outs = to_nhwc(
                np.concatenate([models.prior(mr[i : i + 1], strength, tl, track=0) for i in range(frames)])
            )
            rows[key].append((frame_change(outs), flicker(outs, hrs)))
    return {
        k: {"change": float(np.mean([c for c, _ in v])), "flicker": float(np.mean([f for _, f in v]))}
        for k, v in rows.items()
        if v
    }


def multi_frame(
    models: Models, scale: int, hr: np.ndarray, strength: float, seed: int
) -> dict[str, np.ndarray]:
    """128 px outputs from track histories: each face through a video-coded clip
    (engines.data.video_degrade, its last 5 frames, older ones with the aligner's jitter); every
    method restores the same newest frame, the multi-frame step 1 models also see the older ones."""
    from engines.data.video_degrade import POOL_FRAMES, video_degrade

    clips = video_degrade(hr, SCALES[scale], np.random.default_rng(seed + 7), keep=POOL_FRAMES)
    newest = clips[:, -1]
    out = {"bicubic": bicubic(newest, 128)}
    for k in (1, 3, 5):
        s1 = models.step1(scale, frames=k)
        if s1 is not None:
            x = np.concatenate([to_nchw(clips[:, j]) for j in range(POOL_FRAMES - k, POOL_FRAMES)], axis=1)
            out[f"two-step, {k} frame{'s' if k > 1 else ''}"] = to_nhwc(models.prior(s1(x), strength))
    return out


def figure(path: Path, samples: dict[int, dict[str, Any]], results: dict[str, Any], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted(samples)
    cols = ["LR", "bicubic", "step1 + bicubic", "one-step", "two-step (ours)", "HR"]
    n = min(4, len(samples[scales[0]]["hr"]))
    fig = plt.figure(figsize=(2.0 * len(cols), 2.0 * n * len(scales) * 0.55 + 3.8))
    gs = fig.add_gridspec(2, 1, height_ratios=[n * len(scales) * 0.55, 1.0])
    ax = fig.add_subplot(gs[0])
    tiles = []
    for sc in scales:
        smp = samples[sc]
        for i in range(n):
            row = []
            for c in cols:
                if c == "LR":
                    img = cv2.resize(smp["lr"][i], (128, 128), interpolation=cv2.INTER_NEAREST)
                elif c == "HR":
                    img = smp["hr"][i]
                else:
                    o = smp["out"].get(c)
                    img = o[i] if o is not None else np.full((128, 128, 3), 80, np.uint8)
                row.append(img)
            tiles.append(np.concatenate(row, 1))
    ax.imshow(np.concatenate(tiles, 0))
    ax.set_xticks([64 + 128 * i for i in range(len(cols))], cols, fontsize=8)
    ax.set_yticks([64 + 128 * n * j + 64 * (n - 1) for j in range(len(scales))], [f"x{sc}" for sc in scales])
    ax.set_title(f"held-out {title} test faces, realistic degradation (blur + noise + H.264)", fontsize=9)
    ax2 = fig.add_subplot(gs[1])
    for m in METHODS:
        xs = [sc for sc in scales if results["scales"][str(sc)].get(m)]
        if xs:
            ax2.plot(xs, [results["scales"][str(sc)][m]["psnr"] for sc in xs], marker="o", label=m)
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(scales, [f"x{sc}" for sc in scales])
    ax2.set_xlabel("scale factor (to 128 px)")
    ax2.set_ylabel("PSNR (dB)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results["sets"].items():
        lines += _set_table(name, res, results["variant"]) + [""]
    return "\n".join(lines)


def _cell(r: dict[str, float] | None) -> str:
    return f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['identity']:.3f} / {r['same_person']:.2f}" if r else "n/a"


def _set_table(name: str, res: dict[str, Any], variant: str) -> list[str]:
    lines = [
        f"{name}: quality on {res['faces']} held-out faces, {variant} models: PSNR dB / SSIM / "
        f"identity cosine / same-person rate (dlib distance < {SAME_PERSON})",
        f"{'method':<26}" + "".join(f"{'x' + s:>31}" for s in res["scales"]),
    ]
    for m in METHODS:
        lines.append(f"{m:<26}" + "".join(f"{_cell(res['scales'][s].get(m)):>31}" for s in res["scales"]))
    lines.append(f"(identity cosine between different test people: {res['impostor_cosine']:.3f})")
    lines += int8_table(res.get("int8", {}))
    if res.get("step2_alone"):
        lines.append(
            "64 px input (native-size faces) -> 128 px: "
            + "; ".join(f"{k} {_cell(v)}" for k, v in res["step2_alone"].items())
        )
    for sc, rows in res.get("multi_frame", {}).items():
        lines.append(
            f"x{sc} track histories (video-coded clips, the newest of 5 frames restored): "
            + "; ".join(f"{k} {_cell(v)}" for k, v in rows.items())
        )
    lines.append(
        f"temporal stability, {res['sequences']} faces x {res['frames']} frames, jitter "
        f"<= {JITTER} LR px: mean |frame - previous| / flicker = mean |d(output) - d(HR)| (0-255)"
    )
    lines.append(f"{'output':<28}" + "".join(f"{'x' + s:>16}" for s in res["temporal"]))
    keys = list(next(iter(res["temporal"].values())).keys()) if res["temporal"] else []
    for k in keys:
        cells = []
        for s in res["temporal"]:
            r = res["temporal"][s].get(k)
            cells.append(f"{r['change']:.2f} / {r['flicker']:.2f}" if r else "n/a")
        lines.append(f"{k:<28}" + "".join(f"{c:>16}" for c in cells))
    return lines


def card_text(results: dict[str, Any], scale: str | None) -> str:
    parts = [
        f"`python run.py bench quality`, degradation blur + noise + real H.264, {results['date']}. "
        "PSNR dB / SSIM / identity cosine / same-person rate (dlib)."
    ]
    for name, res in results["sets"].items():
        scales = list(res["scales"])
        rows = [
            f"| {m} | " + " | ".join(_cell(res["scales"][s].get(m)) for s in scales) + " |" for m in METHODS
        ]
        parts.append(
            f"{res['faces']} held-out {name} test faces (engines/splits/{name}_test.txt):\n\n| method | "
            + " | ".join(f"x{s}" for s in scales)
            + " |\n|---|"
            + "---|" * len(scales)
            + "\n"
            + "\n".join(rows)
        )
        if res.get("step2_alone"):
            parts.append(
                "64 px input -> 128 px: "
                + "; ".join(f"{k} {_cell(v)}" for k, v in res["step2_alone"].items())
            )
        for sc, rows in res.get("multi_frame", {}).items():
            parts.append(
                f"x{sc} track histories (each face through a video-coded clip; the newest of 5 frames "
                "restored, multi-frame models also see the older ones): "
                + "; ".join(f"{k} {_cell(v)}" for k, v in rows.items())
            )
    note = f"\n\nThis model's rows: x{scale}." if scale else ""
    return "\n\n".join(parts) + note


def step2_alone(models: Models, hr: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """128 px outputs from 64 px degraded faces: bicubic and step 2 alone (a 64 px native face)."""
    rng = np.random.default_rng(seed + 2)
    mr = np.concatenate([degrade(hr[i : i + 32], 64, rng, REALISTIC) for i in range(0, len(hr), 32)])
    return {"bicubic": bicubic(mr, 128), "step 2 alone": to_nhwc(models.decoder(models.encoder(to_nchw(mr))))}


def run_set(
    name: str, hr: np.ndarray, models: Models, ident: Identity, args: argparse.Namespace, scales: list[int]
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Every method and scale on one test set: (results, the figure's samples)."""
    n_seq, n_frames = (2, 6) if args.quick else (args.sequences, args.frames)
    shapes = [ident.landmarks(h) for h in hr]
    hr_emb = [ident.embed(h, sh) for h, sh in zip(hr, shapes, strict=False)]
    res: dict[str, Any] = {
        "faces": len(hr),
        "scales": {},
        "temporal": {},
        "sequences": n_seq,
        "frames": n_frames,
        "impostor_cosine": impostor_cosine(hr_emb),
        "int8": {},
    }
    int8 = int8_models(args, scales)
    samples: dict[int, dict[str, Any]] = {}
    for sc in scales:
        rng = np.random.default_rng(args.seed + sc)
        lr = np.concatenate(
            [degrade(hr[i : i + 32], SCALES[sc], rng, REALISTIC) for i in range(0, len(hr), 32)]
        )
        outs = run_methods(models, sc, lr, args.prior_strength)
        res["scales"][str(sc)] = {
            m: (metrics(hr, o, ident, shapes, hr_emb) if o is not None else None) for m, o in outs.items()
        }
        if int8 is not None:
            fp32 = {m: (outs[m], res["scales"][str(sc)][m]) for m in INT8_METHODS}
            int8_out = run_methods(int8, sc, lr, args.prior_strength)
            res["int8"][str(sc)] = int8_rows(fp32, int8_out, hr, ident, shapes, hr_emb)
        samples[sc] = {
            "lr": lr[:4],
            "hr": hr[:4],
            "out": {m: (o[:4] if o is not None else None) for m, o in outs.items()},
        }
        res["temporal"][str(sc)] = temporal(
            models, sc, hr[:n_seq], n_frames, args.prior_strength, np.random.default_rng(args.seed + 100 + sc)
        )
        log.info("%s x%d done", name, sc)
    alone = step2_alone(models, hr, args.seed)
    res["step2_alone"] = {k: metrics(hr, o, ident, shapes, hr_emb) for k, o in alone.items()}
    if int8 is not None:
        fp32_alone = {"step 2 alone": (alone["step 2 alone"], res["step2_alone"]["step 2 alone"])}
        int8_alone = step2_alone(int8, hr, args.seed)
        res["int8"]["2"] = int8_rows(fp32_alone, int8_alone, hr, ident, shapes, hr_emb)
    res["multi_frame"] = {
        str(sc): {
            k: metrics(hr, o, ident, shapes, hr_emb)
            for k, o in multi_frame(models, sc, hr, args.prior_strength, args.seed).items()
        }
        for sc in scales
        if models.step1(sc, frames=3) is not None or models.step1(sc, frames=5) is not None
    }
    return res, samples


INT8_METHODS = ("step1 + bicubic", "two-step (ours)")
"""The rows that have int8 twins (the ablations are not quantized)."""


def int8_models(args: argparse.Namespace, scales: list[int]) -> Models | None:
    """The variant's int8 graphs, or None (logged) when one of those the run needs (step 2's and
    each factor's step 1) is missing or was made from other fp32 weights: a retrained step 1
    beside its old twin would report the loss of a model that is gone."""
    from engines.fsr import WeightsNotFound, two_step_files

    try:
        for sc in sorted({2, *scales}):
            two_step_files(sc, args.variant, args.weights, precision="int8")
    except WeightsNotFound as exc:
        log.info("no int8 rows: %s", exc)
        return None
    return Models(args.weights, args.variant, args.threads, suffix="_int8")


def int8_rows(
    fp32: Mapping[str, tuple[np.ndarray | None, dict[str, float] | None]],
    int8: Mapping[str, np.ndarray | None],
    hr: np.ndarray,
    ident: Identity,
    shapes: list[Any],
    hr_emb: list[np.ndarray],
) -> dict[str, dict[str, float]]:
    """Metrics of each int8 output, its loss against its fp32 row (positive: int8 is worse) and
    its mean PSNR against the fp32 output on the same faces."""
    from skimage.metrics import peak_signal_noise_ratio

    rows = {}
    for method, (ref, ref_metrics) in fp32.items():
        out = int8.get(method)
        if out is None or ref is None or ref_metrics is None:
            continue
        r = metrics(hr, out, ident, shapes, hr_emb)
        r["psnr_loss"] = ref_metrics["psnr"] - r["psnr"]
        r["ssim_loss"] = ref_metrics["ssim"] - r["ssim"]
        r["psnr_vs_fp32"] = float(
            np.mean([peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(ref, out, strict=True)])
        )
        rows[method] = r
    return rows


def int8_table(res_int8: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The int8 lines of one set's table (none when the variant has no int8 graphs)."""
    if not res_int8:
        return []
    lines = ["int8 graphs, same faces: PSNR / SSIM, loss against fp32 (dB / SSIM), PSNR against fp32 output"]
    for sc, rows in res_int8.items():
        for method, r in rows.items():
            lines.append(
                f"  x{sc:<3}{method + ' int8':<26}{r['psnr']:.2f} / {r['ssim']:.3f}   loss "
                f"{r['psnr_loss']:+.3f} dB / {r['ssim_loss']:+.4f}   vs fp32 {r['psnr_vs_fp32']:.1f} dB"
            )
    return lines


def set_plot(path: Path, name: str) -> Path:
    return path.with_name(f"{path.stem}_{name}{path.suffix}")


def main(args: argparse.Namespace) -> int:
    from engines.data.datasets import load_hr, names
    from streamer.detectors import face_finder

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.video:
        return quality_video.main(args)
    if not 0.0 <= args.prior_strength <= 1.0:
        raise ValueError(f"--prior-strength must be in [0, 1], got {args.prior_strength}")
    scales = [int(s) for s in args.scales.split(",")]
    bad = [s for s in scales if s not in SCALES]
    if bad:
        raise ValueError(f"--scales must be among {sorted(SCALES)}, got {bad}")
    limit = 16 if args.quick else args.limit
    models = Models(args.weights, args.variant, args.threads)
    ident = Identity()
    t0 = time.monotonic()
    results: dict[str, Any] = {
        "variant": args.variant,
        "prior_strength": args.prior_strength,
        "degradation": asdict(REALISTIC),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "sets": {},
    }
    for name in names(args.sets):
        hr = load_hr("test", args.cache, args.data, datasets=name, limit=limit, finder=face_finder)
        res, samples = run_set(name, hr, models, ident, args, scales)
        results["sets"][name] = res
        figure(set_plot(args.plot, name), samples, res, name)
    results["seconds"] = round(time.monotonic() - t0, 1)
    print(table(results))
    write_json(args.json, results)
    print(f"\nJSON: {args.json}\nfigures: " + ", ".join(str(set_plot(args.plot, n)) for n in results["sets"]))
    if args.cards:
        from engines.train.card import set_benchmark

        for sc in scales:
            set_benchmark(args.weights / f"step1_x{sc}_{args.variant}", card_text(results, str(sc)))
            for rel in (
                f"ablations/step1_x{sc}_{args.variant}_synth",
                f"ablations/onestep_x{sc}_{args.variant}",
            ):
                set_benchmark(args.weights / rel, card_text(results, str(sc)))
        set_benchmark(args.weights / f"step2_{args.variant}", card_text(results, None))
    return 0
