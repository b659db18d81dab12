"""facestream: real-time face super-resolution for live video.

    facestream                      serve the built-in demo camera; open the printed URL
    facestream serve --source rtsp://cam/stream --source video.mp4
    facestream enhance --source in.mp4 --out out.mp4 [--json stats.json]
    facestream serve --ray auto     cameras as Ray actors, one batched engine (requirements-cluster.txt)
    facestream bench pipeline|engines|quality|latency|detection|viewers|cluster
    facestream train ...            train or adapt the FSR engines (needs the dev install)

`python run.py ...` in a checkout is the same command. Every setting can also come from a TOML
file (`--config facestream.toml`); flags override it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import replace
from typing import Any

from streamer.config import AppConfig, ConfigError, add_setting_flags, flag_values, load_toml, merge_flags
from streamer.sources.av_source import classify
from streamer.timeline import default_data_dir

BENCHES = {
    "pipeline": "benchmarks.pipeline",
    "engines": "benchmarks.engines",
    "quality": "benchmarks.quality",
    "latency": "benchmarks.latency",
    "detection": "benchmarks.detection",
    "viewers": "benchmarks.viewers",
    "cluster": "benchmarks.cluster",
}


def add_pipeline_flags(p: argparse.ArgumentParser, command: str) -> None:
    """The flags of `command`: the ones below, and one per setting declared in streamer/config.py."""
    g = p.add_argument_group("pipeline")
    g.add_argument("--config", help="TOML config file; flags given here override it")
    g.add_argument(
        "--source",
        action="append",
        metavar="URI",
        help="demo, a video file, rtsp://, http(s):// or /dev/videoN; repeat for several cameras",
    )
    g.add_argument("-v", "--verbose", action="store_true")
    add_setting_flags(p, command)


def build_config(args: argparse.Namespace, command: str) -> AppConfig:
    """Defaults, then the TOML file, then flags; the run mode decided here, once; validated
    before anything starts. `serve` is live; `enhance` is a file job unless its source is a
    stream or a webcam, which can only be read as it happens. `serve` keeps a face timeline in
    the user's data folder unless told another folder, or `off`."""
    cfg = load_toml(args.config) if getattr(args, "config", None) else AppConfig()
    cfg = merge_flags(cfg, flag_values(args), getattr(args, "source", None))
    live = command == "serve" or any(classify(s.uri) != "file" for s in cfg.sources if s.uri != "demo")
    cfg = replace(cfg, mode="live" if live else "file")
    if command == "serve" and not cfg.storage.data_dir:
        cfg = replace(cfg, storage=replace(cfg.storage, data_dir=default_data_dir(os.environ)))
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    from streamer.server import serve

    cfg = build_config(args, "serve")
    if not cfg.cluster.ray:
        return serve(cfg)
    from streamer.cluster.connect import start

    return serve(cfg, start(cfg))


def cmd_enhance(args: argparse.Namespace) -> int:
    from streamer.enhance_job import run_enhance, summary_table, write_json

    cfg = build_config(args, "enhance")
    if len(cfg.sources) != 1:
        raise ConfigError("enhance takes exactly one --source")
    source = cfg.sources[0]
    if source.uri == "demo" and source.demo_seconds == 0 and not args.max_frames:
        source = replace(source, demo_seconds=10.0)
    summary = run_enhance(cfg, source, args.out, max_frames=args.max_frames)
    print(summary_table(summary))
    if args.json:
        write_json(summary, args.json)
    return 0


def _delegate(module_name: str, prog: str, argv: list[str], **extra: Any) -> int:
    """Hand the rest of the command line to a module's own parser; imported only when used, so
    `--help` and `serve` never pay for torch or plotting imports."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"{prog}: needs the dev install (bash scripts/setup.sh --dev): {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog=prog, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    module.add_arguments(parser)
    return int(module.main(parser.parse_args(argv), **extra))


def _train(prog: str, argv: list[str]) -> int:
    """Training's data preparation needs the application's face detector; engines cannot import
    it, so it is handed over here."""
    from streamer.detectors import face_finder

    return _delegate("engines.train.cli", f"{prog} train", argv, finder=face_finder)


def make_parser(prog: str = "facestream") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="WebRTC server + operator dashboard (the default command)")
    add_pipeline_flags(serve, "serve")
    serve.set_defaults(func=cmd_serve)

    enhance = sub.add_parser(
        "enhance", help="enhance a video or stream into an mp4 file and print stage timings"
    )
    add_pipeline_flags(enhance, "enhance")
    enhance.add_argument("--out", help="output .mp4 (omit to only measure)")
    enhance.add_argument("--json", help="write the timing summary as JSON here")
    enhance.add_argument(
        "--max-frames", type=int, default=0, help="stop after N frames (0: the whole source)"
    )
    enhance.set_defaults(func=cmd_enhance)

    bench = sub.add_parser(
        "bench",
        help="benchmarks: print tables, write JSON and plots",
        description=f"{prog} bench NAME --help shows each benchmark's options",
    )
    bench.add_argument("bench", choices=sorted(BENCHES), help="which benchmark")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of that benchmark")
    bench.set_defaults(
        func=lambda args: _delegate(BENCHES[args.bench], f"{prog} bench {args.bench}", args.bench_args)
    )

    train = sub.add_parser(
        "train",
        help="train or adapt the FSR engines (needs the dev install: torch)",
        description=f"{prog} train --help shows the training options",
        add_help=False,
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER, help="training options")
    train.set_defaults(func=lambda args: _train(prog, args.train_args))
    return parser


def main(argv: list[str] | None = None, prog: str = "facestream") -> int:
    """The `facestream` command (`python run.py` in a checkout names itself `run.py`)."""
    parser = make_parser(prog)
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["serve"]
    if argv[0] == "train" or (argv[0] == "bench" and len(argv) > 1 and argv[1] in BENCHES):
        # Their options belong to the module that runs them (argparse's REMAINDER would swallow
        # neither --help nor leading flags), so hand the rest over untouched.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if argv[0] == "train":
            return _train(prog, argv[1:])
        return _delegate(BENCHES[argv[1]], f"{prog} bench {argv[1]}", argv[2:])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a user-facing one-liner for errors users cause; traceback with -v
        from streamer.errors import USER_ERRORS

        if isinstance(exc, USER_ERRORS) and not getattr(args, "verbose", False):
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1
        raise
