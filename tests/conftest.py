"""Shared fixtures: real clips written with PyAV into temp dirs, and the shared-data location.

`clip_factory(name, ...)` writes a small real clip (container and codec chosen from the file
extension) whose frame i is `clip_frame(i, w, h)`, so a test can compare what it decoded with what
was encoded. `sample_clip` is one ready-made 160x120, 30-frame, 30 fps H.264 mp4 per session.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# extension -> (container format, video codec, pixel format, audio codec)
CLIP_FORMATS: dict[str, tuple[str, str, str, str]] = {
    ".mp4": ("mp4", "libx264", "yuv420p", "aac"),
    ".mkv": ("matroska", "libx264", "yuv420p", "aac"),
    ".ts": ("mpegts", "libx264", "yuv420p", "aac"),
    ".avi": ("avi", "mpeg4", "yuv420p", "mp3"),
    ".webm": ("webm", "libvpx", "yuv420p", "libopus"),
    ".gif": ("gif", "gif", "rgb8", ""),
}


def clip_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame i of a test clip (BGR uint8): a colour ramp, a moving white bar and a grey block
    whose level encodes i (16 levels), so frames differ and survive lossy coding recognisably."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = x[None, :].astype(np.uint8)
    img[..., 1] = y[:, None].astype(np.uint8)
    img[..., 2] = (i * 37) % 256
    bar = (i * 5) % max(width - 8, 1)
    img[:, bar : bar + 8] = 255
    block = min(width, height) // 4
    img[:block, :block] = (i % 16) * 16
    return img


def write_clip(
    path: Path,
    *,
    size: tuple[int, int] = (160, 120),
    frames: int = 30,
    fps: int = 30,
    gop: int | None = None,
    audio: bool = False,
    first_index: int = 0,
    image_fn: Callable[[int, int, int], np.ndarray] = clip_frame,
) -> Path:
    """Encode `frames` frames of `image_fn(i, width, height)` (default `clip_frame`) into `path`;
    the extension picks container and codec."""
    fmt, vcodec, pix_fmt, acodec = CLIP_FORMATS[path.suffix]
    width, height = size
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        options = {"g": str(gop)} if gop else {}
        if vcodec == "libx264":
            options["preset"] = "ultrafast"
        if vcodec == "libvpx":
            options.update({"deadline": "realtime", "cpu-used": "8"})
        video.options = options
        astream = None
        if audio and acodec:
            astream = out.add_stream(acodec, rate=48000)
            astream.layout = "stereo"
        samples_per_frame = 48000 // fps
        for i in range(frames):
            image = image_fn(first_index + i, width, height)
            vf = av.VideoFrame.from_ndarray(image, format="bgr24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for packet in video.encode(vf):
                out.mux(packet)
            if astream is not None:
                t = (np.arange(samples_per_frame) + i * samples_per_frame) / 48000.0
                tone = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(
                    np.stack([tone, tone]).reshape(1, -1), format="flt", layout="stereo"
                )
                af.sample_rate, af.pts = 48000, i * samples_per_frame
                for packet in astream.encode(af):
                    out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if astream is not None:
            for packet in astream.encode():
                out.mux(packet)
    return path


ClipFactory = Callable[..., Path]


@pytest.fixture
def clip_factory(tmp_path: Path) -> ClipFactory:
    """`clip_factory("x.mkv", size=(160, 120), frames=30, fps=30, gop=None, audio=False)` -> Path."""

    def make(name: str, **kwargs: object) -> Path:
        return write_clip(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "sample.mp4")


@pytest.fixture
def shared_dir() -> Path:
    """The read-only ../shared data folder; skips the test when this checkout has none."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED / 'data'}")
    return SHARED


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem in `folder`): the HTTPS source
    and the HTTPS dashboard are tested against real TLS."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


EXIT_STATUS = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without interpreter finalization once everything is reported. Daemon threads of
    servers and sources that a test left running may sit inside an OpenCV call when the
    interpreter shuts down; finalization then ends them with a forced unwind that OpenCV's
    bindings catch ("FATAL: exception not rethrown"), and a run whose every test passed exits 134."""
    if EXIT_STATUS not in config.stash:  # the session never ran (usage error): exit as pytest does
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[EXIT_STATUS])
