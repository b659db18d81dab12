"""`python run.py train ...`: the training command line (run.py calls add_arguments and main).

run.py train prepare                       align + cache faces, harvest real tiny faces
run.py train step2 --variant fast          the prior (64 -> 128)
run.py train step1 --scale 8               step 1 for one scale (learned degradation)
run.py train step1 --scale 8 --synthetic-only      the synthetic-only ablation
run.py train step1 --scale 8 --frames 3 --no-learned --init-from engines/weights
                                           multi-frame step 1 (a track's last 3 crops)
run.py train onestep --scale 8             the one-step ablation (LR -> 128 at equal cost)
run.py train all [--ablations]             step 2 and step 1 at x4, x8, x16 for --variant
run.py train init                          random-init weights in the shipped layout
run.py train quantize [--variant all]      int8 twins of the fp32 graphs (--precision int8)
run.py train --adapt SOURCE --out DIR      fine-tune step 1 on one camera's faces
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from engines.data.finder import FinderFactory
from engines.train.common import REPO, TrainOptions

log = logging.getLogger(__name__)

WHAT = ("prepare", "step1", "step2", "onestep", "all", "init", "quantize")
DEFAULT_STEPS = {"step1": 3000, "step2": 3000, "onestep": 3000, "adapt": 300}
QUANTIZE_FACES = 128
"""Calibration faces per dataset for quantize (256 for the default celeba,allage)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=WHAT, help="what to train (omit with --adapt)")
    parser.add_argument(
        "--variant",
        choices=("fast", "quality", "all"),
        default="fast",
        help="model size (quantize also takes all)",
    )
    parser.add_argument("--scale", type=int, choices=(4, 8, 16), default=8)
    parser.add_argument(
        "--synthetic-only", action="store_true", help="step1: synthetic degradations only (ablation)"
    )
    parser.add_argument(
        "--no-learned",
        action="store_true",
        help="step1/onestep: no learned degradation (synthetic + video-coded pairs; ~2.5x faster steps)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=1,
        help="step1: fuse a track's last N aligned crops (1..5; 1 = single frame); needs --no-learned",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        help="step1: start from this weights folder's single-frame model of --scale (widened to "
        "--frames); step2: fine-tune this folder's step 2",
    )
    parser.add_argument(
        "--through-step2",
        type=Path,
        metavar="WEIGHTS",
        help="step1: also train on the HR output of this weights folder's step 2 (frozen)",
    )
    parser.add_argument(
        "--real-tracks",
        action="store_true",
        help="step1: a quarter of each batch from real track histories (faces moving in ../shared's "
        "videos, made tiny and H.264-coded; MR targets)",
    )
    parser.add_argument(
        "--cascade",
        type=float,
        nargs="?",
        const=0.5,
        default=0.0,
        metavar="SHARE",
        help="step2: this share of each batch's MR faces made by step 1 (its training checkpoints in "
        "--ckpt-dir; bare flag = 0.5)",
    )
    parser.add_argument(
        "--ablations", action="store_true", help="all: also the synthetic-only and one-step models"
    )
    parser.add_argument(
        "--adapt", metavar="SOURCE", help="video file/URL whose tiny faces step 1 is adapted to"
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=REPO / "engines" / "weights",
        help="weights folder --adapt starts from and quantize works in",
    )
    parser.add_argument("--data", type=Path, help="folder holding celeba/ (default ../shared/data/faces)")
    parser.add_argument(
        "--dataset",
        default="celeba,allage",
        help="subfolder(s) of --data with the faces, comma-separated (split lists by name)",
    )
    parser.add_argument("--out", type=Path, help="weights folder to write (default engines/weights)")
    parser.add_argument("--cache", type=Path, default=REPO / "cache" / "data", help="preprocessed arrays")
    parser.add_argument("--ckpt-dir", type=Path, default=REPO / "cache" / "ckpt", help="checkpoints")
    parser.add_argument("--steps", type=int, help="optimizer steps (default 3000; 300 for --adapt)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, help="learning rate (default 2e-3; 5e-4 for --adapt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--ckpt-every", type=int, default=250)
    parser.add_argument("--time-budget", type=float, help="seconds; ends training sooner (decaying the rate)")
    parser.add_argument("--stop-after", type=int, help="end this invocation after N steps (resume later)")
    parser.add_argument(
        "--limit",
        type=int,
        help="use only the first N training faces (smoke tests); quantize: N calibration faces per dataset "
        f"(default {QUANTIZE_FACES})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def options(args: argparse.Namespace, kind: str, finder: FinderFactory | None = None) -> TrainOptions:
    steps = args.steps if args.steps is not None else DEFAULT_STEPS[kind]
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if args.batch < 2:
        raise ValueError(f"--batch must be >= 2, got {args.batch}")
    out = args.out or (
        REPO / "cache" / "weights_adapted" if kind == "adapt" else REPO / "engines" / "weights"
    )
    lr = args.lr if args.lr is not None else (5e-4 if kind == "adapt" else 2e-3)
    return TrainOptions(
        steps=steps,
        batch=args.batch,
        lr=lr,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        data=args.data,
        dataset=args.dataset,
        cache=args.cache,
        ckpt_dir=args.ckpt_dir,
        out=out,
        resume=args.resume,
        ckpt_every=max(1, args.ckpt_every),
        progress=not args.quiet,
        limit=args.limit,
        time_budget=args.time_budget,
        stop_after=args.stop_after,
        finder=finder,
    )


def main(args: argparse.Namespace, finder: FinderFactory | None = None) -> int:
    """`finder` is the application's face detector (run.py passes it); without it, only data
    caches that already exist can be used."""
    from engines.train import configs as C
    from engines.train.step1 import train_restorer
    from engines.train.step2 import train_step2

    if args.adapt:
        from engines.train.adapt import adapt

        info = adapt(
            args.adapt, args.scale, args.variant, options(args, finder=finder, kind="adapt"), args.weights
        )
        log.info(
            "adapted step 1 written to %s (%.0f s)",
            args.out or options(args, finder=finder, kind="adapt").out,
            info["train_seconds"],
        )
        return 0
    if args.what is None:
        raise ValueError("say what to train: one of " + ", ".join(WHAT) + ", or --adapt SOURCE")
    if args.variant == "all" and args.what != "quantize":
        raise ValueError(f"--variant all is for quantize only; {args.what} takes fast or quality")
    if args.what == "quantize":
        return _quantize(args, finder)
    if args.what == "prepare":
        from engines.data.datasets import load_hr, names
        from engines.data.faces import SPLITS_DIR, make_splits, shared_faces_dir, write_splits
        from engines.data.harvest import load_real_lr

        for name in names(args.dataset):
            if not (SPLITS_DIR / f"{name}_train.txt").exists():
                folder = (args.data or shared_faces_dir()) / name
                if not folder.is_dir():
                    raise FileNotFoundError(
                        f"face folder {folder} not found; pass --data DIR holding {name}/"
                    )
                write_splits(make_splits(folder, seed=args.seed), name)
                log.info("wrote split lists engines/splits/%s_{train,val,test}.txt", name)
        for split in ("train", "val", "test"):
            faces = load_hr(split, args.cache, args.data, datasets=args.dataset, finder=finder)
            log.info("%s (%s): %d faces", split, args.dataset, len(faces))
        log.info("real LR faces: %d", len(load_real_lr(args.cache, 16, finder=finder)))
        return 0
    if args.what == "init":
        from engines.train.init_weights import export_random

        export_random(args.out or REPO / "engines" / "weights", variants=(args.variant,), seed=args.seed)
        return 0
    if args.what == "step2":
        train_step2(
            args.variant,
            options(args, finder=finder, kind="step2"),
            cascade=args.cascade,
            init_from=args.init_from,
        )
    elif args.what == "step1":
        train_restorer(
            "step1",
            args.scale,
            args.variant,
            options(args, finder=finder, kind="step1"),
            synthetic_only=args.synthetic_only,
            tag="synth" if args.synthetic_only else "",
            learned=not args.no_learned,
            frames=args.frames,
            init_from=args.init_from,
            through_step2=args.through_step2,
            real_tracks=args.real_tracks,
        )
    elif args.what == "onestep":
        train_restorer(
            "onestep",
            args.scale,
            args.variant,
            options(args, finder=finder, kind="onestep"),
            learned=not args.no_learned,
        )
    else:
        train_step2(args.variant, options(args, finder=finder, kind="step2"))
        for scale in sorted(C.SCALES):
            train_restorer("step1", scale, args.variant, options(args, finder=finder, kind="step1"))
            if args.ablations:
                train_restorer(
                    "step1",
                    scale,
                    args.variant,
                    options(args, finder=finder, kind="step1"),
                    synthetic_only=True,
                    tag="synth",
                )
                train_restorer("onestep", scale, args.variant, options(args, finder=finder, kind="onestep"))
    return 0


def _quantize(args: argparse.Namespace, finder: FinderFactory | None) -> int:
    import shlex
    import sys

    from engines.train.quantize import load_calibration, quantize_weights

    per_dataset = args.limit if args.limit is not None else QUANTIZE_FACES
    if per_dataset < 1:
        raise ValueError(f"--limit must be >= 1, got {per_dataset}")
    calibration = load_calibration(args.cache, args.data, args.dataset, per_dataset, args.seed, finder)
    variants = ("fast", "quality") if args.variant == "all" else (args.variant,)
    done = quantize_weights(
        args.weights,
        calibration,
        variants=variants,
        threads=args.threads,
        command="python run.py " + shlex.join(sys.argv[1:]),
    )
    log.info("int8 graphs written for %s (%s)", ", ".join(done), calibration.describe())
    return 0


def run(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m engines.train.cli`), same flags as `run.py train`."""
    parser = argparse.ArgumentParser(
        prog="train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return main(parser.parse_args(argv))
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"train: error: {exc}\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(run())
