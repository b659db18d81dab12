"""One typed configuration tree for the whole application.

Built only at the edge (`run.py`) from CLI flags or a TOML file; library code receives these
frozen dataclasses and never reads argv or the environment. `validate()` runs at start so a
bad setting fails with one clear message instead of deep inside a stage.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar


class ConfigError(ValueError):
    """A setting is missing, of the wrong type, or out of range."""


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from. `uri` is `demo`, a file path, rtsp://, http(s)://, or /dev/videoN.

    A live source that cannot be opened at start raises SourceError (a wrong URL fails fast)
    unless `retry_at_start`, which keeps retrying in the background like a later disconnect.
    `realtime` paces demo and file sources at their frame rate and makes them live (newest
    frame wins); `demo_seed` picks the demo's wall layout and camera motion.
    """

    uri: str = "demo"
    name: str = ""
    loop: bool = False
    realtime: bool = False
    rtsp_transport: str = "tcp"
    queue_size: int = 2
    open_timeout_s: float = 5.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 8.0
    retry_at_start: bool = False
    max_pixels: int = 40_000_000
    demo_width: int = 1280
    demo_height: int = 720
    demo_fps: float = 30.0
    demo_seconds: float = 0.0
    demo_seed: int = 0

    @property
    def display_name(self) -> str:
        return self.name or Path(self.uri).stem or self.uri


@dataclass(frozen=True)
class DetectConfig:
    """Face detection. `detector` is `centerface` (embedded default), an .onnx path, or an
    InsightFace model pack folder. The default width runs 720p at native size: faces of 10-24 px
    are lost below it (measured in benchmarks/detection.py; see streamer/detectors/centerface.py).
    `threshold` is the lowest score kept; the tracker decides which scores may start a track.
    `background` runs the detector in its own thread on the newest frame (live sources: flat
    per-frame latency); file jobs always run it inline every `interval` frames so their output
    does not depend on timing. `cache_dir` holds models derived on this machine (int8 CenterFace)."""

    detector: str = "centerface"
    input_width: int = 1280
    threshold: float = 0.35
    interval: int = 3
    max_faces: int = 64
    min_face_px: float = 6.0
    threads: int = 1
    background: bool = True
    cache_dir: str = "~/.cache/facestream"


@dataclass(frozen=True)
class TrackConfig:
    """Track birth/death and smoothing rules (streamer/track.py). Detections scoring at least
    `high_score` may start a track, confirmed after `min_hits` detection runs (at once on the
    tracker's first run); lower ones only extend tracks. `max_misses` counts detection runs."""

    match_iou: float = 0.2
    min_hits: int = 2
    max_misses: int = 10
    smoothing: float = 0.6
    high_score: float = 0.45


@dataclass(frozen=True)
class EnhanceConfig:
    """The FSR engine: `engine` is `fsr` (trained two-step model) or `bicubic` (baseline).

    `weights_dir` empty means the weights shipped in the package; `trt_cache_dir` empty means
    ~/.cache/facestream/trt (built TensorRT engines, keyed by model, GPU and TensorRT version).
    `max_faces` caps the faces shown per frame (largest first); `per_frame` caps how many of them
    are run through the engine per frame (0: all), the rest reusing their track's newest
    enhanced face, oldest first in line: the lever that keeps live video real time on a CPU.
    File jobs enhance every face of every frame whatever this says.
    """

    engine: str = "fsr"
    scale: int = 8
    variant: str = "fast"
    backend: str = "auto"
    prior_strength: float = 0.15
    temporal: float = 0.5
    max_faces: int = 16
    per_frame: int = 4
    threads: int = 1
    weights_dir: str = ""
    trt_cache_dir: str = ""


@dataclass(frozen=True)
class OutputConfig:
    """How enhanced faces are shown: `upscale`, `inset` or `gallery`."""

    mode: str = "inset"
    upscale: int = 2
    feather: float = 0.2
    audio: str = "copy"
    crf: int = 20


@dataclass(frozen=True)
class ServerConfig:
    """The WebRTC server and dashboard."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""
    cert: str = ""
    key: str = ""
    codec: str = "vp8"
    bitrate_kbps: int = 4000
    max_peers_total: int = 16
    max_peers_per_client: int = 4
    stun_servers: tuple[str, ...] = ()
    stamp_frames: bool = False  # draw a frame-number code in a corner, for glass-to-glass latency measurement
    # Encode once per camera track and codec for every viewer (streamer/server/encoder.py); off:
    # aiortc encodes per viewer, following each one's bandwidth estimate, at one encode each.
    shared_encoder: bool = True
    keyframe_interval_s: float = 2.0  # shared encoder: longest time between keyframes (the floor)
    keyframe_min_gap_s: float = 0.5  # shared encoder: PLI/FIR keyframes at most this often
    low_bitrate_kbps: int = 1000  # the "low" rendition's bitrate (shared encoder only)
    low_divisor: int = 2  # the "low" rendition's picture size: width and height divided by this


@dataclass(frozen=True)
class AppConfig:
    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    detect: DetectConfig = field(default_factory=DetectConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    server: ServerConfig = field(default_factory=ServerConfig)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg: AppConfig) -> AppConfig:
    """Raise ConfigError naming the first bad setting; return cfg unchanged when all are fine."""
    _check(len(cfg.sources) >= 1, "at least one source is required")
    names = [s.display_name for s in cfg.sources]
    _check(len(set(names)) == len(names), f"source names must be unique, got {names}")
    for s in cfg.sources:
        _check(
            s.rtsp_transport in ("tcp", "udp"), f"rtsp_transport must be tcp or udp, got {s.rtsp_transport!r}"
        )
        _check(s.queue_size >= 1, "source queue_size must be >= 1")
        _check(s.open_timeout_s > 0, "source open_timeout_s must be > 0")
        _check(
            0 < s.reconnect_initial_s <= s.reconnect_max_s, "need 0 < reconnect_initial_s <= reconnect_max_s"
        )
        _check(s.max_pixels >= 64 * 64, "max_pixels must be >= 4096")
        _check(s.demo_width >= 64 and s.demo_height >= 64, "demo size must be at least 64x64")
        _check(s.demo_fps > 0, "demo_fps must be > 0")
        _check(s.demo_seconds >= 0, "demo_seconds must be >= 0 (0 = endless)")
    d = cfg.detect
    _check(d.interval >= 1, f"detect interval must be >= 1 frame, got {d.interval}")
    _check(0.0 < d.threshold < 1.0, f"detect threshold must be in (0, 1), got {d.threshold}")
    _check(d.input_width >= 32, "detect input_width must be >= 32")
    _check(d.max_faces >= 1, "detect max_faces must be >= 1")
    _check(d.threads >= 1, "detect threads must be >= 1")
    t = cfg.track
    _check(0.0 < t.match_iou < 1.0, "track match_iou must be in (0, 1)")
    _check(t.max_misses >= 0 and t.min_hits >= 1, "track max_misses >= 0 and min_hits >= 1")
    _check(0.0 <= t.smoothing < 1.0, "track smoothing must be in [0, 1)")
    _check(0.0 < t.high_score < 1.0, f"track high_score must be in (0, 1), got {t.high_score}")
    e = cfg.enhance
    _check(e.engine in ("fsr", "bicubic"), f"enhance engine must be fsr or bicubic, got {e.engine!r}")
    _check(e.scale in (4, 8, 16), f"enhance scale must be 4, 8 or 16, got {e.scale}")
    _check(e.variant in ("fast", "quality"), f"enhance variant must be fast or quality, got {e.variant!r}")
    _check(
        e.backend in ("auto", "tensorrt", "torch", "onnxruntime"),
        f"backend must be one of auto, tensorrt, torch, onnxruntime; got {e.backend!r}",
    )
    _check(0.0 <= e.prior_strength <= 1.0, "prior_strength must be in [0, 1]")
    _check(0.0 <= e.temporal < 1.0, "temporal must be in [0, 1)")
    _check(e.max_faces >= 1, "enhance max_faces must be >= 1")
    _check(e.per_frame >= 0, f"enhance per_frame must be >= 0 (0: every face), got {e.per_frame}")
    _check(e.threads >= 1, f"enhance threads must be >= 1, got {e.threads}")
    _check(
        not e.weights_dir or Path(e.weights_dir).is_dir(), f"weights_dir {e.weights_dir!r} is not a folder"
    )
    o = cfg.output
    _check(
        o.mode in ("upscale", "inset", "gallery"),
        f"output mode must be upscale, inset or gallery, got {o.mode!r}",
    )
    _check(1 <= o.upscale <= 4, f"output upscale must be 1..4, got {o.upscale}")
    _check(0.0 <= o.feather <= 0.5, "feather must be in [0, 0.5]")
    _check(o.audio in ("copy", "drop"), f"audio must be copy or drop, got {o.audio!r}")
    _check(0 <= o.crf <= 51, "crf must be 0..51")
    sv = cfg.server
    _check(0 <= sv.port <= 65535, f"port must be 0..65535, got {sv.port}")
    _check(sv.codec in ("vp8", "h264"), f"codec must be vp8 or h264, got {sv.codec!r}")
    _check(100 <= sv.bitrate_kbps <= 50_000, "bitrate_kbps must be 100..50000")
    _check(bool(sv.cert) == bool(sv.key), "HTTPS needs both cert and key")
    _check(sv.max_peers_total >= 1 and sv.max_peers_per_client >= 1, "peer caps must be >= 1")
    _check(
        all(u.startswith(("stun:", "turn:", "turns:")) for u in sv.stun_servers),
        "stun_servers entries must be stun:, turn: or turns: URLs",
    )
    _check(0.5 <= sv.keyframe_interval_s <= 60.0, "keyframe_interval_s must be 0.5..60")
    _check(
        0.0 <= sv.keyframe_min_gap_s <= sv.keyframe_interval_s,
        "keyframe_min_gap_s must be between 0 and keyframe_interval_s",
    )
    _check(100 <= sv.low_bitrate_kbps <= 50_000, "low_bitrate_kbps must be 100..50000")
    _check(1 <= sv.low_divisor <= 4, f"low_divisor must be 1..4, got {sv.low_divisor}")
    return cfg


T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = _from_dict(type(default), value, f"{where}.{name}")
            continue
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(default) is not type(value):
            raise ConfigError(
                f"[{where}] {name} must be {type(default).__name__}, got {type(value).__name__} {value!r}"
            )
        kwargs[name] = value
    return cls(**kwargs)


def load_toml(path: str | Path) -> AppConfig:
    """Read a TOML config: top-level tables detect/track/enhance/output/server and an array
    `[[camera]]` of source tables (each with `uri` and optional `name`)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    cameras = data.pop("camera", [])
    if not isinstance(cameras, list):
        raise ConfigError("[[camera]] must be an array of tables")
    sources = tuple(_from_dict(SourceConfig, c, "camera") for c in cameras) or (SourceConfig(),)
    cfg = _from_dict(AppConfig, {k: v for k, v in data.items()}, "config")
    return validate(replace(cfg, sources=sources))
