"""Face super-resolution on real video with ground truth: `run.py bench quality --video`.

For each clip of ../shared/data/videos/talking/ (real talking heads, one large face) and factor:
every frame gets a slight optical blur and an area downscale, chosen per clip so the face's
aligned crop is natively the engine's input side (32 px at x4, 16 px at x8); the small video is
coded with libx264 (CRF `--crf`, P-frames, as a camera stream) and decoded; the real pipeline's
detection, tracking and alignment run on the decoded small video, as in production. The ground
truth of each face is the full-resolution frame cut with the same track landmarks scaled up, at
128 px, so both sides share the pipeline's own jitter.

Methods, each fed the track's crops in frame order with track ids (the state a file job keeps):
bicubic; the two-step model single-frame; the multi-frame two-step (each shipped `_k<K>` step 1:
the track's last K crops); the one-step ablation (engines/weights/ablations). Per clip: PSNR,
SSIM, identity cosine (dlib, as the image benchmark) against the ground truth, and flicker:
mean |frame-to-frame change of the output - that of the ground truth| (0-255) within a track.

Also, without ground truth, the native-entry consistency check on real clips (the demo camera,
the 1080p hallway): an enhanced face resized back to its native size against its native crop,
median PSNR per entry side (issue 8's "never worse than the original").
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.face_metrics import ROOT, Identity, Onnx, flicker, metrics, to_nchw, to_nhwc
from benchmarks.output import write_json
from engines.base import INPUT_SIZE_FOR_SCALE, Enhancer
from engines.data.align import align_face, pixel_map
from engines.data.degrade import h264_clip
from streamer.config import AppConfig, DetectConfig, EnhanceConfig, OutputConfig, SourceConfig
from streamer.entry import native_side

log = logging.getLogger(__name__)

SHARED = ROOT.parent / "shared" / "data" / "videos"
CLIPS = SHARED / "talking"
HALLWAY = SHARED / "facenet_pytorch__video.mp4"
FACTORS = (4, 8)
BLUR = 0.4
"""Optical blur before the downscale, in small-frame pixels (sigma)."""
MIN_SIDE = 256
"""Small frames are centred on a grey canvas at least this wide, so the detector sees a scene
around the face (a 16 px face alone in a 40 px frame is no camera picture)."""
MIRROR = 0.15
"""Around the picture the canvas mirrors it for this fraction of its side: a face that fills its
clip has an aligned crop reaching past the picture's edges, where the ground truth's crop of the
full frame mirrors too (engines.data.align pads so), so both sides see the same context there.
Not more, or the detector finds the mirrored face as a second person."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The --video options (bench quality declares them with its own)."""
    p.add_argument(
        "--clips",
        type=Path,
        default=CLIPS,
        help="folder of talking-head clips",
    )
    p.add_argument("--clip-frames", type=int, default=100, help="frames read per clip")
    p.add_argument("--crf", type=int, default=26, help="libx264 CRF of the small video")
    p.add_argument("--factors", default="4,8", help="comma list of factors for the video benchmark")
    p.add_argument(
        "--video-json", type=Path, default=ROOT / "out" / "bench" / "quality_video.json", help="video JSON"
    )
    p.add_argument(
        "--video-plot", type=Path, default=ROOT / "out" / "bench" / "quality_video.png", help="video figure"
    )


def read_frames(path: Path, limit: int) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="bgr24"))
            if len(frames) >= limit:
                break
    return frames


def _detector(cfg: DetectConfig) -> Any:
    from streamer.detectors import build_detector

    return build_detector(cfg)


def face_side(frames: list[np.ndarray], every: int = 10) -> float:
    """Median native side (streamer.entry.native_side) of the largest face, at full resolution."""
    det = _detector(DetectConfig())
    sides = []
    for img in frames[::every]:
        found = det.detect(img)
        if found:
            best = max(found, key=lambda d: float(d.box[2] - d.box[0]))
            sides.append(native_side(best.landmarks))
    if not sides:
        raise RuntimeError("no face found in the clip at full resolution")
    return float(np.median(sides))


@dataclass
class SmallVideo:
    frames: list[np.ndarray]
    """Decoded small frames (on their canvas), BGR."""
    ratio: tuple[float, float]
    """Full-resolution pixels per small pixel, x and y."""
    offset: tuple[int, int]
    """Where the small picture sits on the canvas."""


def small_video(frames: list[np.ndarray], down: float, crf: int) -> SmallVideo:
    """Blur, area downscale by `down`, centre on a canvas (mirrored near the picture), code with
    libx264 and decode."""
    h, w = frames[0].shape[:2]
    sw, sh = max(2, round(w / down / 2) * 2), max(2, round(h / down / 2) * 2)
    cw, ch = max(MIN_SIDE, sw), max(MIN_SIDE, sh)
    ox, oy = (cw - sw) // 2 // 2 * 2, (ch - sh) // 2 // 2 * 2
    sigma = BLUR * w / sw
    mx, my = min(ox, round(MIRROR * sw)), min(oy, round(MIRROR * sh))
    clip = []
    for f in frames:
        small = cv2.resize(cv2.GaussianBlur(f, (0, 0), sigma), (sw, sh), interpolation=cv2.INTER_AREA)
        mirrored = cv2.copyMakeBorder(small, my, my, mx, mx, cv2.BORDER_REFLECT)
        canvas = np.full((ch, cw, 3), 118, np.uint8)
        canvas[oy - my : oy + sh + my, ox - mx : ox + sw + mx] = mirrored
        clip.append(canvas[..., ::-1])
    decoded = [np.ascontiguousarray(d[..., ::-1]) for d in h264_clip(clip, crf)]
    return SmallVideo(decoded, (w / sw, h / sh), (ox, oy))


@dataclass
class TrackFaces:
    """One track's faces in frame order: LR crops, ground truths, frame indices."""

    lr: list[np.ndarray] = field(default_factory=list)
    gt: list[np.ndarray] = field(default_factory=list)
    index: list[int] = field(default_factory=list)


def observe(full: list[np.ndarray], small: SmallVideo, factor: int) -> dict[int, TrackFaces]:
    """The pipeline's tracks and aligned crops on the small video; each face's ground truth cut
    from the full frame through the same alignment, scaled up: full frame -> small frame -> the
    LR crop -> its 128 px enlargement, pixel centres kept throughout (as the area downscale that
    made the small frame, and as training pairs an HR face with its area-downscaled LR one)."""
    from streamer.pipeline import Pipeline
    from streamer.types import Frame

    cfg = AppConfig(
        mode="file",
        detect=DetectConfig(background=False),
        enhance=EnhanceConfig(engine="bicubic", entry="fixed", scale=factor),
        output=OutputConfig(mode="inset"),
    )
    pipe = Pipeline(cfg, "quality-video")
    tracks: dict[int, TrackFaces] = {}
    to_small = pixel_map(1 / small.ratio[0], 1 / small.ratio[1], *small.offset)
    s = INPUT_SIZE_FOR_SCALE[factor]
    to_gt = pixel_map(128 / s, 128 / s)
    blur = 0.5 * max(small.ratio) * s / 128  # full pixels per ground-truth pixel, anti-aliased
    try:
        for i, img in enumerate(small.frames):
            result = pipe.process(Frame(img, i, i / 25.0, time.monotonic()))
            soft = cv2.GaussianBlur(full[i], (0, 0), blur) if blur > 0.5 else full[i]
            for face in result.faces:
                m = to_gt @ np.vstack([face.crop.matrix, [0.0, 0.0, 1.0]]) @ to_small
                gt = cv2.warpAffine(
                    soft, m[:2], (128, 128), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
                )
                t = tracks.setdefault(face.track_id, TrackFaces())
                t.lr.append(face.crop.image)
                t.gt.append(gt)
                t.index.append(i)
    finally:
        pipe.close()
    return tracks


class OneStep:
    """The one-step ablation as an Enhancer-like callable on BGR crops (stateless)."""

    def __init__(self, path: Path, threads: int) -> None:
        self.net = Onnx(path, threads)

    def enhance(self, crops: np.ndarray, track_ids: list[int]) -> np.ndarray:
        return to_nhwc(self.net(to_nchw(crops[..., ::-1])))[..., ::-1]

    def forget(self, track_ids: list[int]) -> None:
        pass


def methods(weights: Path, factor: int, threads: int) -> dict[str, Any]:
    """Name -> a fresh engine (per clip: multi-frame and temporal state start empty)."""
    from engines.fsr import load_two_step, step1_name

    defaults = EnhanceConfig()
    out: dict[str, Any] = {}

    def fsr(frames: int) -> Enhancer:
        return load_two_step(
            factor,
            "fast",
            "onnxruntime",
            prior_strength=defaults.prior_strength,
            temporal=defaults.temporal,
            threads=threads,
            weights_dir=weights,
            frames=frames,
        )

    out["two-step, 1 frame"] = fsr(1)
    for k in (3, 5):
        if (weights / step1_name(factor, "fast", k)).is_dir():
            out[f"two-step, {k} frames"] = fsr(k)
    one = weights / "ablations" / f"onestep_x{factor}_fast" / "model.onnx"
    if one.exists():
        out["one-step"] = OneStep(one, threads)
    return out


def enhance_tracks(engine: Any, tracks: dict[int, TrackFaces]) -> dict[int, np.ndarray]:
    """Every face through `engine` frame by frame (all faces of a frame in one batch), as a file
    job runs it."""
    frames = sorted({i for t in tracks.values() for i in t.index})
    where = {(tid, i): k for tid, t in tracks.items() for k, i in enumerate(t.index)}
    out = {tid: np.empty((len(t.lr), 128, 128, 3), np.uint8) for tid, t in tracks.items()}
    for i in frames:
        ids = [tid for tid in tracks if (tid, i) in where]
        crops = np.stack([tracks[tid].lr[where[(tid, i)]] for tid in ids])
        for tid, img in zip(ids, engine.enhance(crops, ids), strict=True):
            out[tid][where[(tid, i)]] = img
    return out


@dataclass
class Truth:
    """The ground truth of a clip at one factor, RGB, with its dlib landmarks and embeddings
    (computed once, shared by every method's score)."""

    faces: np.ndarray
    shapes: list[Any]
    embeddings: list[np.ndarray]

    @classmethod
    def of(cls, tracks: dict[int, TrackFaces], ident: Identity) -> Truth:
        faces = np.ascontiguousarray(np.concatenate([np.stack(t.gt) for t in tracks.values()])[..., ::-1])
        shapes = [ident.landmarks(g) for g in faces]
        return cls(faces, shapes, [ident.embed(g, s) for g, s in zip(faces, shapes, strict=True)])


def score(
    tracks: dict[int, TrackFaces], outs: dict[int, np.ndarray], truth: Truth, ident: Identity
) -> dict[str, float]:
    out = np.ascontiguousarray(np.concatenate([outs[tid] for tid in tracks])[..., ::-1])
    m = metrics(truth.faces, out, ident, truth.shapes, truth.embeddings)
    flick = [
        (flicker(outs[tid], np.stack(t.gt)), len(t.gt) - 1) for tid, t in tracks.items() if len(t.gt) > 1
    ]
    m["flicker"] = float(sum(f * n for f, n in flick) / max(1, sum(n for _, n in flick)))
    return m


def run_clip(path: Path, args: argparse.Namespace, ident: Identity) -> tuple[dict[str, Any], dict[str, Any]]:
    """All factors and methods on one clip: (results, figure samples of the largest factor)."""
    full = read_frames(path, args.clip_frames)
    side = face_side(full)
    res: dict[str, Any] = {"frames": len(full), "size": list(full[0].shape[1::-1]), "face_px": round(side, 1)}
    sample: dict[str, Any] = {}
    for factor in [int(f) for f in args.factors.split(",")]:
        s = INPUT_SIZE_FOR_SCALE[factor]
        small = small_video(full, side / s, args.crf)
        tracks = observe(full, small, factor)
        if not tracks:
            res[str(factor)] = {"faces": 0}
            log.warning("%s x%d: no face tracked on the small video", path.name, factor)
            continue
        tid = max(tracks, key=lambda t: len(tracks[t].lr))
        row: dict[str, Any] = {
            "faces": sum(len(t.lr) for t in tracks.values()),
            "tracks": len(tracks),
            "small": list(small.frames[0].shape[1::-1]),
        }
        bic = {
            tid_: np.stack([cv2.resize(c, (128, 128), interpolation=cv2.INTER_CUBIC) for c in t.lr])
            for tid_, t in tracks.items()
        }
        truth = Truth.of(tracks, ident)
        row["bicubic"] = score(tracks, bic, truth, ident)
        outs = {"bicubic": bic}
        for name, engine in methods(args.weights, factor, args.threads).items():
            outs[name] = enhance_tracks(engine, tracks)
            row[name] = score(tracks, outs[name], truth, ident)
        res[str(factor)] = row
        k = len(tracks[tid].lr) // 2
        sample = {
            "factor": factor,
            "lr": tracks[tid].lr[k],
            "gt": tracks[tid].gt[k],
            "out": {m: o[tid][k] for m, o in outs.items()},
        }
        log.info("%s x%d: %d faces in %d tracks", path.name, factor, row["faces"], row["tracks"])
    return res, sample


def consistency(
    source: SourceConfig, entry: str, frames: int, cfg: AppConfig | None = None
) -> tuple[dict[int, float], int, int]:
    """Median PSNR per entry side of (output resized to native size) vs (native aligned crop),
    the faces enhanced and the faces tracked: fidelity to the source, without ground truth."""
    from streamer.pipeline import Pipeline
    from streamer.run_loop import run_source
    from streamer.sources import open_source
    from streamer.types import FrameResult

    cfg = cfg or AppConfig(
        mode="file",
        detect=DetectConfig(background=False),
        enhance=EnhanceConfig(entry=entry),
        output=OutputConfig(mode="upscale", upscale=2),
    )
    pipe = Pipeline(cfg, "consistency")
    src = open_source(source)
    src.start()
    scores: dict[int, list[float]] = {}
    counts = [0, 0]

    def check(result: FrameResult) -> None:
        tracks = {t.track_id: t for t in result.tracks}
        counts[0] += len(result.faces)
        counts[1] += len(result.tracks)
        for face in result.faces:
            side = max(4, round(native_side(tracks[face.track_id].landmarks)))
            native, _ = align_face(result.frame.image, tracks[face.track_id].landmarks, side)
            back = cv2.resize(face.image, (side, side), interpolation=cv2.INTER_AREA)
            mse = float(np.mean((back.astype(np.float64) - native) ** 2))
            scores.setdefault(face.crop.size, []).append(10 * np.log10(255**2 / max(mse, 1e-6)))

    try:
        run_source(pipe, src, check, max_frames=frames, read_timeout=10.0)
    finally:
        src.stop()
        pipe.close()
    return {k: float(np.median(v)) for k, v in scores.items()}, counts[0], counts[1]


def consistency_rows() -> dict[str, Any]:
    """The consistency check on the demo camera and (when present) the 1080p hallway clip,
    native entry against every face through x8."""
    rows: dict[str, Any] = {}
    sources = [("demo", SourceConfig(uri="demo"), 30)]
    if HALLWAY.exists():
        sources.append(("hallway 1080p", SourceConfig(uri=str(HALLWAY)), 30))
    for name, src, frames in sources:
        for entry in ("native", "fixed"):
            medians, enhanced, tracked = consistency(src, entry, frames)
            rows[f"{name}, {entry} entry"] = {
                "psnr_by_side": {str(k): round(v, 2) for k, v in sorted(medians.items())},
                "enhanced": enhanced,
                "tracked": tracked,
            }
    return rows


def figure(path: Path, samples: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["LR", *next(iter(samples.values()))["out"], "ground truth"]
    tiles = []
    for smp in samples.values():
        row = [cv2.resize(smp["lr"], (128, 128), interpolation=cv2.INTER_NEAREST)]
        row += [smp["out"].get(c, np.full((128, 128, 3), 80, np.uint8)) for c in cols[1:-1]]
        row.append(smp["gt"])
        tiles.append(np.concatenate(row, 1))
    fig, ax = plt.subplots(figsize=(1.6 * len(cols), 1.7 * len(tiles) + 0.6))
    ax.imshow(np.concatenate(tiles, 0)[..., ::-1])
    ax.set_xticks([64 + 128 * i for i in range(len(cols))], cols, fontsize=7)
    ax.set_yticks([64 + 128 * i for i in range(len(samples))], [n[:18] for n in samples], fontsize=6)
    factor = next(iter(samples.values()))["factor"]
    ax.set_title(
        f"real talking-head video, x{factor}: downscaled, H.264, the pipeline's own crops", fontsize=8
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(results: dict[str, Any]) -> str:
    lines = [
        f"real video, CRF {results['crf']}: PSNR dB / SSIM / identity cosine / flicker (0-255) against the "
        "full-resolution face"
    ]
    for factor in results["factors"]:
        names: list[str] = []
        for clip in results["clips"].values():
            for m in clip.get(str(factor), {}):
                if isinstance(clip[str(factor)][m], dict) and m not in names:
                    names.append(m)
        lines.append(f"\nx{factor}")
        clips = list(results["clips"])
        lines.append(f"{'method':<22}" + "".join(f"{c[:26]:>30}" for c in clips) + f"{'mean':>30}")
        for m in names:
            cells, vals = [], []
            for c in clips:
                r = results["clips"][c].get(str(factor), {}).get(m)
                cells.append(_cell(r))
                if r:
                    vals.append(r)
            mean = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]} if vals else None
            lines.append(f"{m:<22}" + "".join(f"{x:>30}" for x in cells) + f"{_cell(mean):>30}")
    lines.append(
        "\nconsistency (no ground truth): median PSNR of the output resized to native size vs the native crop"
    )
    for name, r in results["consistency"].items():
        by = ", ".join(f"{k} px {v:.1f} dB" for k, v in r["psnr_by_side"].items()) or "none enhanced"
        lines.append(f"  {name:<32} {by}  ({r['enhanced']} of {r['tracked']} tracked faces enhanced)")
    return "\n".join(lines)


def _cell(r: dict[str, float] | None) -> str:
    if not r:
        return "n/a"
    return f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['identity']:.3f} / {r['flicker']:.2f}"


def main(args: argparse.Namespace) -> int:
    clips = sorted(p for p in args.clips.glob("*") if p.suffix in (".mp4", ".mkv", ".mov"))
    if not clips:
        raise FileNotFoundError(f"no clips in {args.clips} (../shared/data/videos/talking/)")
    ident = Identity()
    t0 = time.monotonic()
    results: dict[str, Any] = {
        "crf": args.crf,
        "factors": [int(f) for f in args.factors.split(",")],
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "clips": {},
    }
    samples = {}
    for path in clips[: 1 if args.quick else None]:
        results["clips"][path.stem], samples[path.stem] = run_clip(path, args, ident)
    results["consistency"] = consistency_rows()
    results["seconds"] = round(time.monotonic() - t0, 1)
    print(table(results))
    write_json(args.video_json, results)
    if any(samples.values()):
        figure(args.video_plot, {k: v for k, v in samples.items() if v})
    print(f"\nJSON: {args.video_json}\nfigure: {args.video_plot}")
    return 0
