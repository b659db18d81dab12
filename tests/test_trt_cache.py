"""TensorRT engine cache: keying, reuse, and rebuild decisions (pure Python, no TensorRT needed)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engines.backends.trt_cache import EngineCache, EngineKey, Profile, file_sha256, load_or_build

KEY = EngineKey(
    model="step1_x8_fast",
    onnx_sha256="a" * 64,
    trt_version="10.13.0",
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability="9.0",
    precision="fp16",
    profile=Profile(1, 8, 32),
)


class Builder:
    """Counts builds and produces a distinct engine blob each time."""

    def __init__(self) -> None:
        self.builds = 0

    def __call__(self) -> bytes:
        self.builds += 1
        return f"engine-{self.builds}".encode()


def deserialize(blob: bytes) -> str | None:
    """Stands in for the TensorRT runtime: accepts only blobs this test's builder makes."""
    return blob.decode() if blob.startswith(b"engine-") else None


@pytest.mark.parametrize(
    "field, value",
    [
        ("model", "step1_x4_fast"),
        ("onnx_sha256", "b" * 64),
        ("trt_version", "10.14.1"),
        ("gpu_name", "NVIDIA H200"),
        ("compute_capability", "8.9"),
        ("precision", "fp32"),
        ("profile", Profile(1, 16, 32)),
    ],
)
def test_key_changes_when_any_part_changes(field: str, value: object) -> None:
    other = dataclasses.replace(KEY, **{field: value})
    assert other.digest() != KEY.digest()
    assert EngineCache(Path("/c")).engine_path(other) != EngineCache(Path("/c")).engine_path(KEY)


def test_key_is_stable_and_names_the_model() -> None:
    assert dataclasses.replace(KEY).digest() == KEY.digest()
    assert EngineCache(Path("/c")).engine_path(KEY).name.startswith("step1_x8_fast-")


def test_profile_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Profile(1, 64, 32)


def test_built_once_then_reused(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), Builder()
    engine, rebuilt = load_or_build(cache, KEY, build, deserialize)
    assert (engine, rebuilt, build.builds) == ("engine-1", True, 1)
    engine, rebuilt = load_or_build(cache, KEY, build, deserialize)
    assert (engine, rebuilt, build.builds) == ("engine-1", False, 1)


def test_a_changed_key_rebuilds_and_prunes_the_stale_entry(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), Builder()
    load_or_build(cache, KEY, build, deserialize)
    newer = dataclasses.replace(KEY, trt_version="10.14.1")
    engine, rebuilt = load_or_build(cache, newer, build, deserialize)
    assert (engine, rebuilt) == ("engine-2", True)
    assert not cache.engine_path(KEY).exists() and not cache.meta_path(KEY).exists()
    assert cache.engine_path(newer).exists()
    other_model = dataclasses.replace(KEY, model="step2_fast.encoder")
    load_or_build(cache, other_model, build, deserialize)
    assert cache.engine_path(newer).exists(), "another model's entry is not stale"


def test_corrupt_engine_file_is_rebuilt_not_a_crash(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), Builder()
    load_or_build(cache, KEY, build, deserialize)
    cache.engine_path(KEY).write_bytes(b"engine-1 but trunc")
    engine, rebuilt = load_or_build(cache, KEY, build, deserialize)
    assert (engine, rebuilt, build.builds) == ("engine-2", True, 2)


def test_unreadable_metadata_is_rebuilt(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), Builder()
    load_or_build(cache, KEY, build, deserialize)
    cache.meta_path(KEY).write_text("{not json")
    _, rebuilt = load_or_build(cache, KEY, build, deserialize)
    assert rebuilt and build.builds == 2
    json.loads(cache.meta_path(KEY).read_text())


def test_metadata_of_another_key_under_this_name_is_stale(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), Builder()
    load_or_build(cache, KEY, build, deserialize)
    meta = json.loads(cache.meta_path(KEY).read_text())
    meta["key"]["gpu_name"] = "NVIDIA A100"
    cache.meta_path(KEY).write_text(json.dumps(meta))
    _, rebuilt = load_or_build(cache, KEY, build, deserialize)
    assert rebuilt


def test_an_engine_the_runtime_rejects_is_rebuilt(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), Builder()
    load_or_build(cache, KEY, build, deserialize)
    calls = {"n": 0}

    def picky(blob: bytes) -> str | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("serialization version mismatch")
        return deserialize(blob)

    engine, rebuilt = load_or_build(cache, KEY, build, picky)
    assert (engine, rebuilt) == ("engine-2", True)


def test_a_build_the_runtime_cannot_load_is_an_error(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    with pytest.raises(RuntimeError, match="could not load the engine it just built"):
        load_or_build(cache, KEY, lambda: b"garbage", deserialize)
    assert not cache.engine_path(KEY).exists()


def test_timing_cache_is_shared_per_gpu_and_version(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.read_timing_cache(KEY) == b""
    cache.write_timing_cache(KEY, b"timings")
    assert cache.read_timing_cache(dataclasses.replace(KEY, model="step2_fast.decoder")) == b"timings"
    assert cache.read_timing_cache(dataclasses.replace(KEY, gpu_name="NVIDIA H200")) == b""


def test_file_hash_follows_content(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    p.write_bytes(b"one")
    first = file_sha256(p)
    p.write_bytes(b"two")
    assert file_sha256(p) != first and len(first) == 64
