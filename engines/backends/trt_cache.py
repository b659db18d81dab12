"""Where built TensorRT engines live on disk, and when one must be rebuilt. Pure Python.

An engine is only valid for the exact ONNX bytes, TensorRT version, GPU model and compute
capability, precision and optimization profile it was built with. The TensorRT samples key their
cache by file path alone, which silently serves a stale engine after any of those change; here
the key holds all of them, hashed into the file name, and the full key is stored beside the
engine and compared on load. A missing, stale, truncated or unreadable entry is rebuilt, never a
crash. This module imports neither TensorRT nor CUDA, so its decisions are tested on any machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bump when the layout of an entry changes; old entries then read as stale."""

T = TypeVar("T")


def default_cache_dir() -> Path:
    """Used when the configuration names no cache folder."""
    return Path.home() / ".cache" / "facestream" / "trt"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Profile:
    """The optimization profile over the batch axis: TensorRT tunes kernels for `opt`."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"need 1 <= min <= opt <= max batch, got {self.min_batch}, {self.opt_batch}, {self.max_batch}"
            )


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on."""

    model: str
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: Profile

    def as_dict(self) -> dict[str, object]:
        return {"format": FORMAT_VERSION, **asdict(self)}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    @property
    def stem(self) -> str:
        """File name stem: readable model name, then the key hash."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.model)
        return f"{safe}-{self.digest()[:20]}"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write beside the target and rename, so a crash never leaves half an engine under its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EngineCache:
    """A folder of `<model>-<keyhash>.engine` files, each with a `.json` holding its full key and
    the engine's sha256, plus one timing cache per TensorRT version and GPU."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.stem}.engine"

    def meta_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.stem}.json"

    def timing_cache_path(self, key: EngineKey) -> Path:
        """Timings depend on the GPU and TensorRT version, not on the model: one file serves all."""
        tag = hashlib.sha256(
            f"{key.trt_version}|{key.gpu_name}|{key.compute_capability}".encode()
        ).hexdigest()[:16]
        return self.root / f"timing-{tag}.cache"

    def load(self, key: EngineKey) -> bytes | None:
        """The engine bytes when a valid entry exists for exactly this key, else None (and why, logged)."""
        engine, meta = self.engine_path(key), self.meta_path(key)
        if not engine.is_file() or not meta.is_file():
            log.info("trt cache: no engine for %s yet", key.model)
            return None
        try:
            stored = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            log.warning("trt cache: unreadable metadata %s (%s); rebuilding", meta, exc)
            return None
        if not isinstance(stored, dict) or stored.get("key") != json.loads(json.dumps(key.as_dict())):
            log.warning("trt cache: %s was built for another key; rebuilding", engine.name)
            return None
        blob = engine.read_bytes()
        if hashlib.sha256(blob).hexdigest() != stored.get("engine_sha256"):
            log.warning("trt cache: %s is corrupt (checksum mismatch); rebuilding", engine.name)
            return None
        return blob

    def store(self, key: EngineKey, blob: bytes) -> Path:
        """Save a freshly built engine and drop older entries of the same model (now stale)."""
        if not blob:
            raise ValueError(f"refusing to cache an empty engine for {key.model}")
        self.prune(key)
        _atomic_write(self.engine_path(key), blob)
        meta = {"key": key.as_dict(), "engine_sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
        _atomic_write(self.meta_path(key), json.dumps(meta, indent=1, sort_keys=True).encode())
        return self.engine_path(key)

    def invalidate(self, key: EngineKey) -> None:
        self.engine_path(key).unlink(missing_ok=True)
        self.meta_path(key).unlink(missing_ok=True)

    def prune(self, key: EngineKey) -> list[Path]:
        """Remove entries of the same model built under other keys; returns what was removed."""
        if not self.root.is_dir():
            return []
        prefix = key.stem.rsplit("-", 1)[0] + "-"
        removed = []
        for p in self.root.glob(f"{prefix}*"):
            tail = p.stem[len(prefix) :]
            is_entry = len(tail) == 20 and all(c in "0123456789abcdef" for c in tail)
            if p.suffix in (".engine", ".json") and is_entry and p.stem != key.stem:
                p.unlink(missing_ok=True)
                removed.append(p)
        if removed:
            log.info("trt cache: removed %d stale file(s) of %s", len(removed), key.model)
        return removed

    def read_timing_cache(self, key: EngineKey) -> bytes:
        p = self.timing_cache_path(key)
        try:
            return p.read_bytes()
        except OSError:
            return b""

    def write_timing_cache(self, key: EngineKey, data: bytes) -> None:
        if data:
            _atomic_write(self.timing_cache_path(key), data)


def load_or_build(
    cache: EngineCache, key: EngineKey, build: Callable[[], bytes], deserialize: Callable[[bytes], T | None]
) -> tuple[T, bool]:
    """(engine, rebuilt): the cached engine when valid and loadable, else a fresh build.

    `deserialize` may return None or raise for a blob the runtime rejects (a truncated file, an
    engine from another TensorRT build): that entry is dropped and rebuilt rather than crashing.
    """
    blob = cache.load(key)
    if blob is not None:
        try:
            engine = deserialize(blob)
        except Exception as exc:  # noqa: BLE001 - any runtime rejection means "rebuild"
            log.warning("trt cache: could not load %s (%s); rebuilding", cache.engine_path(key).name, exc)
            engine = None
        if engine is not None:
            log.info("trt cache: using %s", cache.engine_path(key))
            return engine, False
        cache.invalidate(key)
    log.info(
        "trt cache: building an engine for %s (%s, batch %d..%d)",
        key.model,
        key.precision,
        key.profile.min_batch,
        key.profile.max_batch,
    )
    blob = build()
    engine = deserialize(blob)
    if engine is None:
        raise RuntimeError(f"TensorRT could not load the engine it just built for {key.model}")
    cache.store(key, blob)
    return engine, True
