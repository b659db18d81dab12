"""The one schema of every setting, and the code that builds, checks and changes a configuration.

Each field is declared once, below, with its type, default, allowed values or range, help text,
its command-line flag (if it has one) and whether it may change while a camera runs. Everything
else is generated from these declarations: the argparse flags (`add_setting_flags`), TOML
loading (`load_toml`), validation (`validate`, also run on every live change through `apply`),
the controls the server accepts and the option lists the dashboard shows (`live_settings`).

Validation is pydantic v2 over these plain frozen dataclasses: pydantic gives field constraints,
exact error locations and a JSON Schema without us writing a validator, and keeping stdlib
dataclasses (not BaseModel) means library code keeps `dataclasses.replace` and never pays for
validation per frame. msgspec was the other candidate; pydantic was chosen because its
constraint errors carry the bound and the offending value, which our messages quote.

Built only at the edge (`run.py`); library code receives these dataclasses and never reads argv
or the environment. The run `mode` (live or file) is decided there once and carried here.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError

from engines.backends import valid_names as backend_names
from engines.base import STEP1_SCALES
from engines.fsr import PRECISIONS


class ConfigError(ValueError):
    """A setting is missing, of the wrong type, or out of range."""


COMMANDS = ("serve", "enhance")
"""The run.py commands that take pipeline settings as flags."""

MAX_SHOWN = 40
"""Longest rendering of a rejected value in a message: a 4,000-digit number must not reach a log."""


def setting(
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    live: bool = False,
    flag: str = "",
    commands: tuple[str, ...] = COMMANDS,
    control: str = "",
    strict: bool = True,
    **bounds: float,
) -> Any:
    """The declaration of one setting, used as `Annotated[type, setting(...)]`.

    `bounds` are pydantic's ge/gt/le/lt. `flag` is the command-line option (none when empty) for
    `commands`; `live` marks a setting that a running camera accepts through `apply`, under the
    short name `control` in the server's controls API (default: the field's own name). `strict`
    refuses look-alike types ("3" for 3, true for 1); lists (TOML, JSON) need it off to become
    tuples.
    """
    extra: dict[str, Any] = {"live": live, "flag": flag, "commands": list(commands), "control": control}
    if choices is not None:
        extra["enum"] = list(choices)
    info: Any = Field(strict=strict, description=help, json_schema_extra=extra, **bounds)  # type: ignore[call-overload]
    if choices is not None:
        info.metadata.append(AfterValidator(_one_of(choices)))
    return info


def _one_of(choices: tuple[Any, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"must be {_spoken(choices)}")
        return value

    return check


def _spoken(choices: tuple[Any, ...]) -> str:
    words = [str(c) for c in choices]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


_STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from. `uri` is `demo`, a file path, rtsp://, http(s)://, or /dev/videoN.

    A live source that cannot be opened at start raises SourceError (a wrong URL fails fast)
    unless `retry_at_start`, which keeps retrying in the background like a later disconnect.
    Whether demo and file sources are paced at their frame rate (live) is the app's `mode`.
    """

    __pydantic_config__ = _STRICT

    uri: Annotated[str, setting("demo, a file path, rtsp://, http(s):// or /dev/videoN")] = "demo"
    name: Annotated[str, setting("camera name shown on the dashboard (default: from the uri)")] = ""
    loop: Annotated[bool, setting("loop file sources", flag="--loop")] = False
    rtsp_transport: Annotated[
        str, setting("RTSP transport", choices=("tcp", "udp"), flag="--rtsp-transport")
    ] = "tcp"
    queue_size: Annotated[int, setting("decoded frames buffered per source", ge=1)] = 2
    open_timeout_s: Annotated[float, setting("seconds to wait for a source to open", gt=0)] = 5.0
    reconnect_initial_s: Annotated[float, setting("first reconnect delay (s)", gt=0)] = 0.5
    reconnect_max_s: Annotated[float, setting("longest reconnect delay (s)", gt=0)] = 8.0
    retry_at_start: Annotated[bool, setting("keep retrying a live source that cannot open at start")] = False
    max_pixels: Annotated[int, setting("larger frames are downscaled to fit", ge=64 * 64)] = 40_000_000
    demo_width: Annotated[int, setting("demo camera width", ge=64)] = 1280
    demo_height: Annotated[int, setting("demo camera height", ge=64)] = 720
    demo_fps: Annotated[float, setting("demo camera frame rate", gt=0)] = 30.0
    demo_seconds: Annotated[float, setting("demo length in seconds (0 = endless)", ge=0)] = 0.0
    demo_seed: Annotated[int, setting("demo wall layout and camera motion")] = 0

    @property
    def display_name(self) -> str:
        return self.name or Path(self.uri).stem or self.uri


@dataclass(frozen=True)
class DetectConfig:
    """Face detection. `detector` is `centerface` (embedded default), an .onnx path, or an
    InsightFace model pack folder. The default width runs 720p at native size: faces of 10-24 px
    are lost below it (measured in benchmarks/detection.py; see streamer/detectors/centerface.py).
    `threshold` is the lowest score kept; the tracker decides which scores may start a track.
    `background` runs the detector in its own thread on the newest frame in live mode (flat
    per-frame latency); file jobs always run it inline every `interval` frames so their output
    does not depend on timing. `scan` says what a pass looks at: `regions` (default) runs the
    whole frame at `input_width` only every `full_every` frames and, on the passes between,
    regions around known faces, one tile of a rolling 1.5x scan and where the picture moved, all
    enlarged so 10-12 px faces are found (streamer/regions.py); `full` runs the whole frame on
    every pass. `cache_dir` holds models derived on this machine (int8 CenterFace)."""

    __pydantic_config__ = _STRICT

    detector: Annotated[
        str,
        setting(
            "centerface (default), an SCRFD or YuNet .onnx file, or an InsightFace pack folder",
            flag="--detector",
        ),
    ] = "centerface"
    input_width: Annotated[int, setting("detection input width (px)", ge=32, flag="--detect-width")] = 1280
    threshold: Annotated[
        float, setting("lowest detection score kept", gt=0.0, lt=1.0, flag="--detect-threshold")
    ] = 0.35
    interval: Annotated[
        int,
        setting(
            "run the detector every N frames; tracking in between",
            ge=1,
            le=30,
            live=True,
            control="detect_interval",
            flag="--detect-interval",
        ),
    ] = 3
    scan: Annotated[
        str,
        setting(
            "what a detector pass looks at: regions (around faces, a rolling scan tile and motion, "
            "enlarged; the whole frame every full_every frames) or full (the whole frame every pass)",
            choices=("regions", "full"),
            flag="--detect-scan",
        ),
    ] = "regions"
    full_every: Annotated[
        int, setting("regions scan: frames between whole-frame passes", ge=1, flag="--detect-full-every")
    ] = 30
    max_faces: Annotated[int, setting("most faces kept per frame", ge=1)] = 64
    min_face_px: Annotated[float, setting("smallest face side kept (px)", ge=0)] = 6.0
    threads: Annotated[int, setting("detector threads", ge=1)] = 1
    background: Annotated[bool, setting("live mode: detect in a background thread")] = True
    cache_dir: Annotated[str, setting("models derived on this machine")] = "~/.cache/facestream"


@dataclass(frozen=True)
class TrackConfig:
    """Track birth/death and smoothing rules (streamer/track.py). Detections scoring at least
    `high_score` may start a track, confirmed after `min_hits` detection runs (at once on the
    tracker's first run); lower ones only extend tracks. `max_misses` counts detection runs."""

    __pydantic_config__ = _STRICT

    match_iou: Annotated[float, setting("IoU to match a detection to a track", gt=0.0, lt=1.0)] = 0.2
    min_hits: Annotated[int, setting("detection runs before a track is confirmed", ge=1)] = 2
    max_misses: Annotated[int, setting("detection runs a track survives unseen", ge=0)] = 10
    smoothing: Annotated[float, setting("landmark smoothing", ge=0.0, lt=1.0)] = 0.6
    high_score: Annotated[float, setting("lowest score that may start a track", gt=0.0, lt=1.0)] = 0.45


@dataclass(frozen=True)
class EnhanceConfig:
    """The FSR engine: `engine` is `fsr` (trained two-step model) or `bicubic` (baseline).

    `weights_dir` empty means the weights shipped in the package; `trt_cache_dir` empty means
    ~/.cache/facestream/trt (built TensorRT engines, keyed by model, GPU and TensorRT version).
    `max_faces` caps the faces shown per frame (largest first); `per_frame` caps how many of them
    are run through the engine per frame in live mode (0: all), the rest reusing their track's
    newest enhanced face, oldest first in line: the lever that keeps live video real time on a
    CPU. File jobs enhance every face of every frame whatever this says.

    `reuse_below`: aligned 16 px crops of faces that did not change (the demo's prints filmed by
    a moving camera) still differ by 3-8 (median 5.2, mean absolute difference 0-255) from
    frame to frame through resampling alone; a talking face differs by 9-31 (10th-90th
    percentile). Below 6, 63% of the demo's frame-to-frame crops and 1 in 70 of the talking
    clip's are reused; what the engine would have redrawn there is flicker (the output of the
    unchanged prints moved by 4.1 on average). Measured with every face enhanced every frame.
    """

    __pydantic_config__ = _STRICT

    engine: Annotated[
        str, setting("fsr (trained model) or bicubic", choices=("fsr", "bicubic"), flag="--engine")
    ] = "fsr"
    scale: Annotated[
        int,
        setting(
            "FSR factor with fixed entry: x4 (32->128), x8 (16->128), x16 (8->128)",
            choices=STEP1_SCALES,
            live=True,
            flag="--scale",
        ),
    ] = 8
    entry: Annotated[
        str,
        setting(
            "native: each face enters the engine at its own size (about 8/16/32 px: step 1 at "
            "x16/x8/x4; about 64 px: step 2 alone; larger: left as it is), so no face is rebuilt "
            "from fewer pixels than it has; fixed: every face at --scale",
            choices=("native", "fixed"),
            live=True,
            flag="--entry",
        ),
    ] = "native"
    variant: Annotated[str, setting("model size", choices=("fast", "quality"), flag="--variant")] = "fast"
    backend: Annotated[str, setting("inference backend", choices=backend_names(), flag="--backend")] = "auto"
    precision: Annotated[
        str,
        setting(
            "FSR graphs: auto (int8 where the engine runs on ONNX Runtime's CPU provider and the "
            "model has int8 twins, else fp32), fp32, or int8 (statically quantized, made by "
            "`run.py train quantize`; ONNX Runtime only, so backend auto or onnxruntime)",
            choices=PRECISIONS,
            flag="--precision",
        ),
    ] = "auto"
    prior_strength: Annotated[
        float,
        setting("latent interpolation toward the prior mean, 0..1", ge=0.0, le=1.0, flag="--prior-strength"),
    ] = 0.15
    temporal: Annotated[
        float,
        setting(
            "latent smoothing across time within a track, 0 (off)..<1", ge=0.0, lt=1.0, flag="--temporal"
        ),
    ] = 0.5
    frames: Annotated[
        int,
        setting(
            "aligned crops of a track step 1 fuses (1: the newest alone); used where a multi-frame "
            "model is shipped (x8), other factors stay single-frame",
            choices=(1, 3, 5),
            live=True,
            flag="--frames",
        ),
    ] = 1
    max_faces: Annotated[int, setting("most faces shown per frame (largest first)", ge=1)] = 16
    per_frame: Annotated[
        int,
        setting(
            "live sources: faces run through the engine per frame, the others reuse their newest "
            "enhanced face (0: all; default 4). Files always enhance every face",
            ge=0,
            flag="--per-frame",
        ),
    ] = 4
    reuse_below: Annotated[
        float,
        setting(
            "a face whose aligned LR crop changed by less than this (mean absolute difference, "
            "0-255) since its newest enhancement reuses it (0: always enhance)",
            ge=0.0,
            le=255.0,
            flag="--reuse-below",
        ),
    ] = 6.0
    threads: Annotated[int, setting("engine threads", ge=1)] = 1
    overlap: Annotated[
        str,
        setting(
            "enhance jobs: decode, detect+track+crop, enhance+composite and the mp4 encode each in "
            "their own thread, frames kept in order, none dropped (auto: on for files and the demo, "
            "off for streams read live; served cameras always run in one thread)",
            choices=("auto", "on", "off"),
            flag="--overlap",
            commands=("enhance",),
        ),
    ] = "auto"
    weights_dir: Annotated[str, setting("FSR weights folder (default: the shipped weights)")] = ""
    trt_cache_dir: Annotated[str, setting("TensorRT engine cache (default ~/.cache/facestream/trt)")] = ""


@dataclass(frozen=True)
class OutputConfig:
    """How enhanced faces are shown (`mode`), and how the file job writes its mp4."""

    __pydantic_config__ = _STRICT

    mode: Annotated[
        str,
        setting(
            "how enhanced faces are shown", choices=("upscale", "inset", "gallery"), live=True, flag="--mode"
        ),
    ] = "inset"
    upscale: Annotated[
        int, setting("output frame scale in upscale mode (1..4)", ge=1, le=4, live=True, flag="--upscale")
    ] = 2
    feather: Annotated[float, setting("soft edge of pasted faces", ge=0.0, le=0.5)] = 0.2
    audio: Annotated[
        str,
        setting(
            "copy the source's audio into the mp4 (default) or drop it",
            choices=("copy", "drop"),
            flag="--audio",
            commands=("enhance",),
        ),
    ] = "copy"
    crf: Annotated[
        int,
        setting(
            "x264 quality of the output (0..51, lower is better; default 20)",
            ge=0,
            le=51,
            flag="--crf",
            commands=("enhance",),
        ),
    ] = 20


def _serve(help: str, **kw: Any) -> Any:
    return setting(help, commands=("serve",), **kw)


@dataclass(frozen=True)
class ServerConfig:
    """The WebRTC server and dashboard."""

    __pydantic_config__ = _STRICT

    host: Annotated[
        str, _serve("bind address (default 127.0.0.1; use 0.0.0.0 for the LAN)", flag="--host")
    ] = "127.0.0.1"
    port: Annotated[int, _serve("TCP port", ge=0, le=65535, flag="--port")] = 8080
    token: Annotated[
        str, _serve("access token (default: a random one, printed in the URL)", flag="--token")
    ] = ""
    cert: Annotated[str, _serve("TLS certificate (PEM) for HTTPS", flag="--cert")] = ""
    key: Annotated[str, _serve("TLS private key (PEM) for HTTPS", flag="--key")] = ""
    codec: Annotated[str, _serve("video codec", choices=("vp8", "h264"), flag="--codec")] = "vp8"
    bitrate_kbps: Annotated[int, _serve("video bitrate in kbit/s", ge=100, le=50_000, flag="--bitrate")] = (
        4000
    )
    max_peers_total: Annotated[int, _serve("most viewers at once", ge=1)] = 16
    max_peers_per_client: Annotated[int, _serve("most viewers per client address", ge=1)] = 4
    stun_servers: Annotated[tuple[str, ...], _serve("stun:, turn: or turns: URLs", strict=False)] = ()
    stamp_frames: Annotated[
        bool, _serve("draw a frame-number code in a corner, for glass-to-glass latency measurement")
    ] = False
    ice_networks: Annotated[
        tuple[str, ...],
        _serve(
            "ICE candidates an offer may name (CIDR networks); empty: the networks of this machine's "
            "own interfaces plus the private ranges, so the server cannot be aimed at third parties",
            strict=False,
        ),
    ] = ()
    ws_origins: Annotated[
        tuple[str, ...],
        _serve("origins besides the server's own whose pages may open the metadata WebSocket", strict=False),
    ] = ()
    cors_origins: Annotated[
        tuple[str, ...],
        _serve(
            "origins whose browser pages may use the WHEP endpoints (CORS); empty: no CORS headers",
            strict=False,
        ),
    ] = ()
    idle_timeout_s: Annotated[
        float,
        _serve(
            "a connection without a whole request head this long after opening or its last response "
            "is closed (slowloris, idle keep-alive)",
            gt=0,
        ),
    ] = 15.0
    body_timeout_s: Annotated[float, _serve("a request body must arrive within this many seconds", gt=0)] = (
        10.0
    )
    max_pending_offers: Annotated[
        int, _serve("answered offers not yet connected, held apart from the peer caps (oldest dropped)", ge=1)
    ] = 8
    pending_timeout_s: Annotated[float, _serve("seconds an unconnected offer is held", gt=0)] = 10.0
    shared_encoder: Annotated[
        bool,
        _serve(
            "encode once per camera track and codec for every viewer; off: aiortc encodes per viewer, "
            "following each one's bandwidth estimate, at one encode each"
        ),
    ] = True
    keyframe_interval_s: Annotated[
        float, _serve("shared encoder: longest time between keyframes", ge=0.5, le=60.0)
    ] = 2.0
    keyframe_min_gap_s: Annotated[
        float, _serve("shared encoder: keyframes asked for by viewers (PLI/FIR) at most this often", ge=0.0)
    ] = 0.5
    encode_speed: Annotated[
        str,
        _serve(
            "shared encoder: CPU against picture quality (VP8 cpu-used -6/-6/-8/-16, H.264 preset "
            "medium/veryfast/superfast/ultrafast); measured in streamer/server/encoder.py",
            choices=("best", "balanced", "fast", "fastest"),
            flag="--encode-speed",
        ),
    ] = "fast"
    low_bitrate_kbps: Annotated[int, _serve("the low rendition's bitrate", ge=100, le=50_000)] = 1000
    low_divisor: Annotated[
        int, _serve("the low rendition's width and height divided by this", ge=1, le=4)
    ] = 2
    rtsp_out: Annotated[
        int,
        _serve(
            "also serve each camera's enhanced stream as RTSP H.264 on this port, at "
            "rtsp://facestream:TOKEN@HOST:PORT/CAMERA (0: off)",
            ge=0,
            le=65535,
            flag="--rtsp-out",
        ),
    ] = 0


@dataclass(frozen=True)
class RecordConfig:
    """Continuous recording of each camera's enhanced stream (streamer/server/recording.py), in
    mp4 segments remuxed from the shared H.264 encoder. `dir` empty: no recording. The oldest
    segments go first when either limit is passed."""

    __pydantic_config__ = _STRICT

    dir: Annotated[
        str, _serve("record each camera's enhanced stream into this folder (empty: off)", flag="--record-dir")
    ] = ""
    segment_s: Annotated[float, _serve("length of one mp4 segment (s)", ge=1.0, le=3600.0)] = 60.0
    max_age_days: Annotated[
        float, _serve("keep recordings this many days", gt=0, flag="--record-keep-days")
    ] = 7.0
    max_size_mb: Annotated[
        int, _serve("keep at most this many MB of recordings", ge=1, flag="--record-keep-mb")
    ] = 20_000


@dataclass(frozen=True)
class StorageConfig:
    """What the server keeps of what it saw: the face timeline (streamer/timeline.py). `data_dir`
    empty or `off` means nothing is kept; `facestream serve` fills in the user's data folder when
    none is given, so only `off` turns it off there. Oldest faces go first when either limit is passed, and
    nothing is written while the disk has less than `min_free_mb` free."""

    __pydantic_config__ = _STRICT

    data_dir: Annotated[
        str,
        _serve(
            "folder for the face timeline (serve default: $XDG_DATA_HOME/facestream; off: keep nothing)",
            flag="--data-dir",
        ),
    ] = ""
    max_age_days: Annotated[float, _serve("keep faces this many days", gt=0, flag="--keep-days")] = 30.0
    max_size_mb: Annotated[int, _serve("keep at most this many MB of faces", ge=1, flag="--keep-mb")] = 2048
    faces_per_track: Annotated[int, _serve("best faces kept per track", ge=1, le=20)] = 3
    min_free_mb: Annotated[int, _serve("write nothing while the disk has less free (MB)", ge=0)] = 200

    @property
    def keeps_faces(self) -> bool:
        return self.data_dir not in ("", "off")


@dataclass(frozen=True)
class ClusterConfig:
    """Running the cameras on a Ray cluster (streamer/cluster/): `ray` empty keeps everything in
    this process and never imports Ray. Actors and engine replicas ask for the custom resources
    `facestream_camera` and `facestream_engine` (one each), never for fractional CPUs: a node
    offers as many of each as its `ray start --resources` says it can run."""

    __pydantic_config__ = _STRICT

    ray: Annotated[
        str,
        _serve(
            "run cameras on the Ray cluster at ADDRESS (host:port), or auto to start a local one",
            flag="--ray",
        ),
    ] = ""
    engine_replicas: Annotated[
        int, _serve("Ray: FSR engine replicas, each batching face crops across cameras", ge=1)
    ] = 1
    max_batch: Annotated[int, _serve("Ray: most camera frames whose crops one engine call takes", ge=1)] = 8
    batch_wait_ms: Annotated[
        float, _serve("Ray: how long an engine replica waits for more cameras' crops", ge=0, le=1000)
    ] = 50.0
    engine_per_camera: Annotated[
        bool, _serve("Ray: each camera actor runs an engine of its own instead of the shared deployment")
    ] = False
    actor_restarts: Annotated[
        int, _serve("Ray: restarts of a camera actor (its node died) before the head recreates it", ge=0)
    ] = 5


@dataclass(frozen=True)
class AppConfig:
    """The whole configuration. `mode` is `live` (a camera re-streamed: sources paced at their
    frame rate, newest frame wins, background detection, a per-frame engine budget) or `file`
    (every frame and every face processed, deterministic output); decided once at the edge."""

    __pydantic_config__ = _STRICT

    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    detect: DetectConfig = field(default_factory=DetectConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    mode: Literal["live", "file"] = "live"

    @property
    def live(self) -> bool:
        return self.mode == "live"


SECTIONS: dict[str, type] = {
    "detect": DetectConfig,
    "track": TrackConfig,
    "enhance": EnhanceConfig,
    "output": OutputConfig,
    "server": ServerConfig,
    "storage": StorageConfig,
    "cluster": ClusterConfig,
    "record": RecordConfig,
}

_ADAPTER = TypeAdapter(AppConfig)


# -- the declarations, read back -----------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One declared field, as the generators need it."""

    section: str
    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    bounds: dict[str, float]
    live: bool
    flag: str
    commands: tuple[str, ...]
    control: str

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    def describe(self) -> dict[str, Any]:
        """What a client needs to offer this setting (the dashboard builds its controls from it)."""
        out: dict[str, Any] = {"path": self.path, "type": self.type.__name__, "help": self.help}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        for key, word in (("ge", "min"), ("le", "max")):
            if key in self.bounds:
                out[word] = self.bounds[key]
        return out


def _settings_of(section: str, cls: type) -> list[Setting]:
    hints = get_type_hints(cls, include_extras=True)
    found = []
    for f in fields(cls):
        hint = hints[f.name]
        if get_origin(hint) is not Annotated:
            continue
        base, *meta = get_args(hint)
        info = next(m for m in meta if hasattr(m, "json_schema_extra"))
        extra = info.json_schema_extra
        bounds = {
            k: float(getattr(m, k)) for m in info.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)
        }
        default = f.default if f.default is not MISSING else None
        found.append(
            Setting(
                section=section,
                name=f.name,
                type=get_origin(base) or base,
                default=default,
                help=str(info.description),
                choices=tuple(extra["enum"]) if "enum" in extra else None,
                bounds=bounds,
                live=bool(extra["live"]),
                flag=str(extra["flag"]),
                commands=tuple(extra["commands"]),
                control=str(extra["control"]) or f.name,
            )
        )
    return found


SETTINGS: tuple[Setting, ...] = tuple(
    s for section, cls in (("source", SourceConfig), *SECTIONS.items()) for s in _settings_of(section, cls)
)


def live_settings() -> dict[str, Setting]:
    """The settings a running camera accepts, by control name."""
    return {s.control: s for s in SETTINGS if s.live}


def _resolve(key: str) -> Setting:
    """A live setting by dotted path (`detect.interval`) or control name (`detect_interval`)."""
    for s in SETTINGS:
        if s.live and key in (s.path, s.control):
            return s
    valid = ", ".join(sorted(live_settings()))
    raise ConfigError(f"unknown or not live setting {_shown(key)}; live settings: {valid}")


# -- validation ----------------------------------------------------------------------------------
def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 3]}..."


def _kind(value: Any) -> str:
    """A value's type as a person sending JSON or TOML knows it."""
    return "null" if value is None else type(value).__name__


def _where(loc: tuple[Any, ...]) -> str:
    if loc and loc[0] == "sources" and len(loc) >= 2:
        return " ".join(["camera", str(loc[1]), *map(str, loc[2:])])
    return " ".join(map(str, loc))


_TYPE_WORDS = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool"}
_BOUND_WORDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _message(err: Mapping[str, Any]) -> str:
    kind, loc, given = err["type"], tuple(err["loc"]), err.get("input")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown key(s) in [{_where(loc[:-1]) or 'config'}]: {loc[-1]}"
    where = _where(loc)
    if kind in _TYPE_WORDS or kind == "float_parsing":
        expected = _TYPE_WORDS.get(kind, "float")
        return f"{where} must be {expected}, got {_kind(given)} {_shown(given)}"
    if kind in _BOUND_WORDS:
        bound = next(iter(err.get("ctx", {}).values()), "?")
        return f"{where} must be {_BOUND_WORDS[kind]} {bound}, got {_shown(given)}"
    if kind == "value_error":
        return f"{where} {err['ctx']['error']}, got {_shown(given)}"
    if kind == "literal_error":
        return f"{where} must be {err['ctx']['expected']}, got {_shown(given)}"
    return f"{where}: {err['msg']}"


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _check_across(cfg: AppConfig) -> None:
    """Rules that tie several fields together, and the shapes of list entries, which per-field
    constraints cannot say."""
    _check(len(cfg.sources) >= 1, "at least one source is required")
    names = [s.display_name for s in cfg.sources]
    _check(len(set(names)) == len(names), f"source names must be unique, got {names}")
    for s in cfg.sources:
        _check(s.reconnect_initial_s <= s.reconnect_max_s, "need 0 < reconnect_initial_s <= reconnect_max_s")
    e = cfg.enhance
    _check(
        not e.weights_dir or Path(e.weights_dir).is_dir(), f"weights_dir {e.weights_dir!r} is not a folder"
    )
    _check(
        e.precision != "int8" or e.backend in ("auto", "onnxruntime"),
        f"precision int8 runs on ONNX Runtime only; use backend auto or onnxruntime, not {e.backend}",
    )
    sv = cfg.server
    _check(bool(sv.cert) == bool(sv.key), "HTTPS needs both cert and key")
    _check(
        all(u.startswith(("stun:", "turn:", "turns:")) for u in sv.stun_servers),
        "stun_servers entries must be stun:, turn: or turns: URLs",
    )
    for net in sv.ice_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(
                f"ice_networks entries must be CIDR networks like 10.0.0.0/8, not {net!r}"
            ) from None
    for name, origins in (("ws_origins", sv.ws_origins), ("cors_origins", sv.cors_origins)):
        _check(
            all(re.fullmatch(r"https?://[^/?#\s]+", o) for o in origins),
            f"{name} entries must be origins like https://cams.example.org, got {list(origins)}",
        )

    _check(
        not cfg.cluster.ray or sv.shared_encoder,
        "--ray needs server.shared_encoder: the pictures stay on the cluster, only packets reach the head",
    )
    _check(
        sv.keyframe_min_gap_s <= sv.keyframe_interval_s,
        "keyframe_min_gap_s must be between 0 and keyframe_interval_s",
    )


def _parse(data: dict[str, Any]) -> AppConfig:
    try:
        cfg = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0])) from None
    _check_across(cfg)
    return cfg


def validate(cfg: AppConfig) -> AppConfig:
    """Raise ConfigError naming the first bad setting; return cfg unchanged when all are fine."""
    _parse(asdict(cfg))
    return cfg


def apply(cfg: AppConfig, changes: Mapping[str, Any]) -> AppConfig:
    """`cfg` with live `changes` (`{"detect.interval": 2}` or `{"detect_interval": 2}`), validated
    by the same schema as at start. Refuses settings that are not live."""
    if not changes:
        raise ConfigError(f"no change given; live settings: {', '.join(sorted(live_settings()))}")
    data = asdict(cfg)
    for key, value in changes.items():
        s = _resolve(str(key))
        data[s.section][s.name] = value
    return _parse(data)


# -- TOML ----------------------------------------------------------------------------------------
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
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown key(s) in [config]: {', '.join(sorted(unknown))}")
    tree = asdict(AppConfig())
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        tree[section] = {**tree[section], **values}
    if cameras:
        tree["sources"] = cameras
    return _parse(tree)


# -- command-line flags --------------------------------------------------------------------------
def add_setting_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """One argparse option per declared flag that `command` takes, grouped by section."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        if not s.flag or command not in s.commands:
            continue
        group = groups.get(s.section)
        if group is None:
            group = groups[s.section] = parser.add_argument_group(s.section)
        dest = f"{s.section}.{s.name}"
        if s.type is bool:
            group.add_argument(s.flag, dest=dest, action="store_true", default=None, help=s.help)
            continue
        kwargs: dict[str, Any] = {
            "dest": dest,
            "type": s.type,
            "help": _flag_help(s),
            "metavar": s.name.upper(),
        }
        if s.choices is not None:
            kwargs["choices"] = list(s.choices)
        group.add_argument(s.flag, **kwargs)


def _flag_help(s: Setting) -> str:
    span = [
        f"{word} {s.bounds[k]:g}"
        for k, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if k in s.bounds
    ]
    notes = [f"default {s.default!r}" if s.default not in ("", None) else "", ", ".join(span)]
    extra = "; ".join(n for n in notes if n)
    return f"{s.help} ({extra})" if extra else s.help


def flag_values(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings given on the command line, by section: {"detect": {"interval": 2}}."""
    out: dict[str, dict[str, Any]] = {}
    for s in SETTINGS:
        value = getattr(args, s.path, None)
        if s.flag and value is not None:
            out.setdefault(s.section, {})[s.name] = value
    return out


def merge_flags(cfg: AppConfig, given: Mapping[str, Mapping[str, Any]], uris: list[str] | None) -> AppConfig:
    """`cfg` with command-line values on top; source flags apply to every source."""
    tree = asdict(cfg)
    if uris:
        tree["sources"] = [asdict(SourceConfig(uri=u)) for u in uris]
    for section, values in given.items():
        if section == "source":
            tree["sources"] = [{**src, **values} for src in tree["sources"]]
        else:
            tree[section] = {**tree[section], **values}
    return _parse(tree)
