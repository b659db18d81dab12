#!/usr/bin/env python3
"""facestream: real-time face super-resolution for live video.

    python run.py                      serve the built-in demo camera; open the printed URL
    python run.py serve --source rtsp://cam/stream --source video.mp4
    python run.py enhance --source in.mp4 --out out.mp4 [--json stats.json]
    python run.py bench pipeline|engines|quality|latency|detection
    python run.py train ...            train or adapt the FSR engines (needs the dev install)

Every setting can also come from a TOML file (`--config facestream.toml`); flags override it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import replace
from typing import Any

from streamer.config import AppConfig, ConfigError, SourceConfig, load_toml, validate

BENCHES = {
    "pipeline": "benchmarks.pipeline",
    "engines": "benchmarks.engines",
    "quality": "benchmarks.quality",
    "latency": "benchmarks.latency",
    "detection": "benchmarks.detection",
    "viewers": "benchmarks.viewers",
}


def add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pipeline")
    g.add_argument("--config", help="TOML config file; flags given here override it")
    g.add_argument(
        "--source",
        action="append",
        metavar="URI",
        help="demo, a video file, rtsp://, http(s):// or /dev/videoN; repeat for several cameras",
    )
    g.add_argument("--loop", action="store_true", default=None, help="loop file sources")
    g.add_argument("--rtsp-transport", choices=["tcp", "udp"])
    g.add_argument(
        "--detector", help="centerface (default), an SCRFD .onnx file, or an InsightFace pack folder"
    )
    g.add_argument("--detect-width", type=int, dest="detect_input_width", help="detection input width (px)")
    g.add_argument("--detect-interval", type=int, help="run the detector every N frames; tracking in between")
    g.add_argument("--detect-threshold", type=float)
    g.add_argument("--engine", choices=["fsr", "bicubic"])
    g.add_argument(
        "--scale", type=int, choices=[4, 8, 16], help="FSR factor: x4 (32->128), x8 (16->128), x16 (8->128)"
    )
    g.add_argument("--variant", choices=["fast", "quality"])
    g.add_argument("--backend", choices=["auto", "tensorrt", "torch", "onnxruntime"])
    g.add_argument("--prior-strength", type=float, help="latent interpolation toward the prior mean, 0..1")
    g.add_argument("--temporal", type=float, help="latent smoothing across time within a track, 0 (off)..<1")
    g.add_argument(
        "--per-frame",
        type=int,
        help="live sources: faces run through the engine per frame, the others "
        "reuse their newest enhanced face (0: all; default 4). Files always enhance every face",
    )
    g.add_argument("--mode", choices=["upscale", "inset", "gallery"], help="how enhanced faces are shown")
    g.add_argument("--upscale", type=int, help="output frame scale in upscale mode (1..4)")
    g.add_argument("-v", "--verbose", action="store_true")


SECTION_FLAGS = {
    "detect": {
        "detector": "detector",
        "detect_input_width": "input_width",
        "detect_interval": "interval",
        "detect_threshold": "threshold",
    },
    "enhance": {
        "engine": "engine",
        "scale": "scale",
        "variant": "variant",
        "backend": "backend",
        "prior_strength": "prior_strength",
        "temporal": "temporal",
        "per_frame": "per_frame",
    },
    "output": {"mode": "mode", "upscale": "upscale", "audio": "audio", "crf": "crf"},
    "server": {
        "host": "host",
        "port": "port",
        "token": "token",
        "cert": "cert",
        "key": "key",
        "codec": "codec",
        "bitrate_kbps": "bitrate_kbps",
    },
}


def build_config(args: argparse.Namespace, realtime: bool) -> AppConfig:
    """Defaults, then the TOML file, then flags; validated before anything starts."""
    cfg = load_toml(args.config) if getattr(args, "config", None) else AppConfig()
    for section, mapping in SECTION_FLAGS.items():
        changes: dict[str, Any] = {}
        for flag, field_name in mapping.items():
            value = getattr(args, flag, None)
            if value is not None:
                changes[field_name] = value
        if changes:
            cfg = replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
    sources = cfg.sources
    if getattr(args, "source", None):
        sources = tuple(SourceConfig(uri=u) for u in args.source)
    extra: dict[str, Any] = {"realtime": realtime}
    if getattr(args, "loop", None):
        extra["loop"] = True
    if getattr(args, "rtsp_transport", None):
        extra["rtsp_transport"] = args.rtsp_transport
    sources = tuple(replace(s, **extra) for s in sources)
    return validate(replace(cfg, sources=sources))


def cmd_serve(args: argparse.Namespace) -> int:
    from streamer.server import serve

    return serve(build_config(args, realtime=True))


def cmd_enhance(args: argparse.Namespace) -> int:
    from streamer.enhance_job import run_enhance, summary_table, write_json

    cfg = build_config(args, realtime=False)
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


def _delegate(module_name: str, prog: str, argv: list[str]) -> int:
    """Hand the rest of the command line to a module's own parser; imported only when used, so
    `run.py --help` and `serve` never pay for torch or plotting imports."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"run.py: {prog} needs the dev install (bash scripts/setup.sh --dev): {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog=prog, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    module.add_arguments(parser)
    return int(module.main(parser.parse_args(argv)))


def cmd_bench(args: argparse.Namespace) -> int:
    return _delegate(BENCHES[args.bench], f"run.py bench {args.bench}", args.bench_args)


def cmd_train(args: argparse.Namespace) -> int:
    return _delegate("engines.train.cli", "run.py train", args.train_args)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="WebRTC server + operator dashboard (the default command)")
    add_pipeline_flags(serve)
    g = serve.add_argument_group("server")
    g.add_argument("--host", help="bind address (default 127.0.0.1; use 0.0.0.0 for the LAN)")
    g.add_argument("--port", type=int)
    g.add_argument("--token", help="access token (default: a random one, printed in the URL)")
    g.add_argument("--cert", help="TLS certificate (PEM) for HTTPS")
    g.add_argument("--key", help="TLS private key (PEM) for HTTPS")
    g.add_argument("--codec", choices=["vp8", "h264"])
    g.add_argument("--bitrate", type=int, dest="bitrate_kbps", help="video bitrate in kbit/s")
    serve.set_defaults(func=cmd_serve)

    enhance = sub.add_parser(
        "enhance", help="enhance a video or stream into an mp4 file and print stage timings"
    )
    add_pipeline_flags(enhance)
    enhance.add_argument("--out", help="output .mp4 (omit to only measure)")
    enhance.add_argument("--json", help="write the timing summary as JSON here")
    enhance.add_argument(
        "--audio", choices=["copy", "drop"], help="copy the source's audio into the mp4 (default) or drop it"
    )
    enhance.add_argument(
        "--crf", type=int, help="x264 quality of the output (0..51, lower is better; default 20)"
    )
    enhance.add_argument(
        "--max-frames", type=int, default=0, help="stop after N frames (0: the whole source)"
    )
    enhance.set_defaults(func=cmd_enhance)

    bench = sub.add_parser(
        "bench",
        help="benchmarks: print tables, write JSON and plots",
        description="run.py bench NAME --help shows each benchmark's options",
    )
    bench.add_argument("bench", choices=sorted(BENCHES), help="which benchmark")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of that benchmark")
    bench.set_defaults(func=cmd_bench)

    train = sub.add_parser(
        "train",
        help="train or adapt the FSR engines (needs the dev install: torch)",
        description="run.py train --help shows the training options",
        add_help=False,
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER, help="training options")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["serve"]
    if argv[0] == "train" or (argv[0] == "bench" and len(argv) > 1 and argv[1] in BENCHES):
        # Their options belong to the module that runs them (argparse's REMAINDER would swallow
        # neither --help nor leading flags), so hand the rest over untouched.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if argv[0] == "train":
            return _delegate("engines.train.cli", "run.py train", argv[1:])
        return _delegate(BENCHES[argv[1]], f"run.py bench {argv[1]}", argv[2:])
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
        print(f"run.py: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a user-facing one-liner for errors users cause; traceback with -v
        from streamer.errors import USER_ERRORS

        if isinstance(exc, USER_ERRORS) and not getattr(args, "verbose", False):
            print(f"run.py: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
