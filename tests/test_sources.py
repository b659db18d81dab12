"""PyAV sources on real files and a real HTTP stream, and every kind of bad input.

Clips are encoded with PyAV into temp dirs (tests/conftest.py); nothing is mocked.
"""

from __future__ import annotations

import http.server
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ClipFactory, clip_frame, make_self_signed, write_clip

from streamer.config import SourceConfig
from streamer.sources import AvSource, FrameQueue, FrameSource, SourceError, classify, open_source
from streamer.sources.av_source import Timeline
from streamer.types import Frame


def _read_all(cfg: SourceConfig, limit: int = 1000) -> tuple[list[Frame], AvSource]:
    src = open_source(cfg)
    assert isinstance(src, AvSource)
    frames: list[Frame] = []
    src.start()
    try:
        while len(frames) < limit:
            f = src.read(timeout=10.0)
            if f is None:
                break
            frames.append(f)
    finally:
        src.stop()
    return frames, src


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".avi", ".webm", ".gif"])
def test_file_formats_deliver_every_frame_with_stream_timing(clip_factory: ClipFactory, ext: str) -> None:
    path = clip_factory(f"clip{ext}", frames=30, fps=30)
    frames, src = _read_all(SourceConfig(uri=str(path)))
    assert isinstance(src, FrameSource)
    assert not src.is_live and src.ended
    assert len(frames) == 30
    assert [f.index for f in frames] == list(range(30))
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    # GIF stores delays in 1/100 s, so its 30 fps becomes 0.03/0.04 s steps.
    tol = 0.011 if ext == ".gif" else 1e-3
    assert np.allclose([f.pts for f in frames], np.arange(30) / 30, atol=tol)
    assert src.fps == pytest.approx(30, rel=0.12)
    assert src.stats.frames_read == 30 and src.stats.corrupt_packets == 0 and src.stats.frames_dropped == 0
    err = np.abs(frames[7].image.astype(int) - clip_frame(7, 160, 120).astype(int)).mean()
    assert err < 20, f"decoded frame 7 differs from what was encoded (mean abs error {err:.1f})"


@pytest.mark.shared
def test_real_videos_in_shared_data_decode(shared_dir: Path) -> None:
    videos = sorted((shared_dir / "data" / "videos").glob("*.*"))
    assert videos, "shared/data/videos is empty"
    for path in videos:
        frames, src = _read_all(SourceConfig(uri=str(path)), limit=5)
        assert len(frames) == 5, path.name
        h, w = frames[0].image.shape[:2]
        assert w >= 160 and h >= 120 and src.fps > 0, path.name
        assert np.all(np.diff([f.pts for f in frames]) > 0), path.name


def test_iterating_a_source_starts_and_stops_it(sample_clip: Path) -> None:
    src = open_source(SourceConfig(uri=str(sample_clip)))
    frames = list(src)
    assert len(frames) == 30
    assert src.read() is None  # stays at end


def test_looping_file_keeps_pts_increasing(sample_clip: Path) -> None:
    frames, src = _read_all(SourceConfig(uri=str(sample_clip), loop=True), limit=75)
    assert len(frames) == 75
    pts = np.array([f.pts for f in frames])
    assert np.all(np.diff(pts) > 0)
    assert np.allclose(pts, np.arange(75) / 30, atol=1e-3), "loops continue the timeline without gaps"
    assert src.stats.frames_lost == 0 and src.stats.reconnects == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: _write(d / "empty.mp4", b""), "file is empty (0 bytes)"),
        (lambda d: _write(d / "notes.mp4", b"this is a text file, not a video\n" * 20), "not a video file"),
        (lambda d: d, "is a directory"),
    ],
    ids=["missing", "zero-bytes", "text-file", "directory"],
)
def test_bad_files_fail_at_start_with_one_clear_line(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    src = open_source(SourceConfig(uri=str(path)))
    with pytest.raises(SourceError) as info:
        src.start()
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text
    src.stop()


def test_audio_only_file_says_it_has_no_video(tmp_path: Path) -> None:
    import av

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 48000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(SourceError, match="has no video stream"):
        open_source(SourceConfig(uri=str(path))).start()


def test_unsupported_scheme_and_empty_uri_are_rejected() -> None:
    with pytest.raises(SourceError, match="unsupported scheme 'ftp'"):
        open_source(SourceConfig(uri="ftp://example.com/a.mp4"))
    with pytest.raises(SourceError, match="uri is empty"):
        open_source(SourceConfig(uri=""))
    assert classify("rtsp://h/x") == "network" and classify("/dev/video0") == "webcam"
    assert classify("clip.mp4") == "file" and classify("file:///tmp/a.mp4") == "file"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_rtsp_url_fails_fast_at_start() -> None:
    uri = f"rtsp://127.0.0.1:{_free_port()}/x"
    src = open_source(SourceConfig(uri=uri, open_timeout_s=1.0))
    assert src.is_live
    with pytest.raises(SourceError, match="Connection refused") as info:
        src.start()
    assert uri in str(info.value)
    src.stop()


def test_silent_server_times_out_instead_of_hanging() -> None:
    """A port that accepts the connection but never answers must not hang the open."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(4)
        uri = f"rtsp://127.0.0.1:{hole.getsockname()[1]}/x"
        src = open_source(SourceConfig(uri=uri, open_timeout_s=0.5))
        with pytest.raises(SourceError, match=r"timed out after 0\.5 s"):
            src.start()


def test_unreachable_source_with_retry_at_start_keeps_retrying() -> None:
    uri = f"rtsp://127.0.0.1:{_free_port()}/x"
    src = open_source(
        SourceConfig(
            uri=uri, open_timeout_s=0.5, retry_at_start=True, reconnect_initial_s=0.1, reconnect_max_s=0.2
        )
    )
    assert isinstance(src, AvSource)
    src.start()
    try:
        assert src.read(timeout=0.5) is None  # no exception while it retries
        assert src.state in ("connecting", "reconnecting")
        assert not src.ended
    finally:
        src.stop()
    assert src.state == "stopped"


def test_missing_webcam_is_a_clear_error() -> None:
    uri = "/dev/video97"
    src = open_source(SourceConfig(uri=uri))
    assert src.is_live
    with pytest.raises(SourceError, match="no such video device"):
        src.start()


@pytest.mark.skipif(not Path("/dev/video0").exists(), reason="no V4L2 webcam on this machine")
def test_real_webcam_delivers_frames() -> None:
    frames, src = _read_all(SourceConfig(uri="/dev/video0"), limit=5)
    assert len(frames) == 5 and frames[0].image.ndim == 3


@pytest.mark.parametrize("ext", [".mp4", ".ts"])
def test_corrupt_middle_is_skipped_and_counted(tmp_path: Path, ext: str) -> None:
    # Noise frames make every frame a large packet; a GOP of 10 lets decoding recover.
    path = tmp_path / f"noisy{ext}"
    _write_noise_clip(path, frames=60)
    data = bytearray(path.read_bytes())
    a, b = int(len(data) * 0.45), int(len(data) * 0.55)
    data[a:b] = np.random.default_rng(1).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))

    frames, src = _read_all(SourceConfig(uri=str(path)))
    pts = [f.pts for f in frames]
    assert 0 < len(frames) < 60, "some frames are lost, the rest arrive"
    assert pts[0] == pytest.approx(0.0), "frames before the damage arrive"
    assert pts[-1] == pytest.approx(59 / 30, abs=1e-3), "frames after the damage arrive"
    assert np.all(np.diff(pts) > 0)
    assert src.stats.corrupt_packets > 0
    assert src.stats.frames_lost == 60 - len(frames), "timestamp gaps account for every missing frame"


def test_100_megapixel_image_is_downscaled_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "huge.jpg"
    big = np.zeros((10_000, 10_000), np.uint8)
    big[::100] = 255
    assert cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 40])
    del big
    caplog.set_level(logging.WARNING, logger="streamer.sources")
    frames, src = _read_all(SourceConfig(uri=str(path), max_pixels=4_000_000))
    assert len(frames) == 1
    h, w = frames[0].image.shape[:2]
    assert (w, h) == (2000, 2000) and h * w <= 4_000_000
    assert src.stats.oversized_frames == 1
    assert any("10000x10000 frame is above max_pixels" in r.getMessage() for r in caplog.records)


def test_resolution_change_mid_stream_delivers_both_sizes(tmp_path: Path) -> None:
    small = write_clip(tmp_path / "a.ts", size=(160, 120), frames=20)
    large = write_clip(tmp_path / "b.ts", size=(320, 240), frames=20, first_index=20)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(small.read_bytes() + large.read_bytes())  # MPEG-TS segments concatenate byte-wise

    frames, src = _read_all(SourceConfig(uri=str(joined)))
    sizes = [f.image.shape[:2] for f in frames]
    assert sizes[0] == (120, 160) and sizes[-1] == (240, 320)
    assert set(sizes) == {(120, 160), (240, 320)}
    assert len(frames) == 40
    assert src.stats.resolution_changes == 1
    # The second segment's timestamps restart at zero; the source keeps time moving forward.
    assert np.all(np.diff([f.pts for f in frames]) > 0)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=["http", "https"])
def http_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP(S) server on loopback serving files from a temp folder."""
    served = tmp_path / "www"
    served.mkdir()
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if request.param == "https":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*make_self_signed(tmp_path))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"{request.param}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_stream_is_live_and_reconnects_after_it_ends(http_dir: tuple[Path, str]) -> None:
    folder, base = http_dir
    write_clip(folder / "cam.ts", frames=30)
    cfg = SourceConfig(uri=f"{base}/cam.ts", queue_size=64, reconnect_initial_s=0.1, open_timeout_s=2.0)
    frames, src = _read_all(cfg, limit=45)
    assert src.is_live
    assert len(frames) == 45, "after the 30-frame stream ended the source re-opened it"
    assert src.stats.reconnects >= 1
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    assert frames[0].image.shape == (120, 160, 3)


def test_http_404_is_a_clear_error(http_dir: tuple[Path, str]) -> None:
    _, base = http_dir
    with pytest.raises(SourceError, match="404"):
        open_source(SourceConfig(uri=f"{base}/nothing.ts", open_timeout_s=2.0)).start()


def test_realtime_file_acts_like_a_camera(sample_clip: Path) -> None:
    """Live, a slow consumer gets the newest frame and the skipped ones are counted."""
    src = open_source(SourceConfig(uri=str(sample_clip), queue_size=1), live=True)
    assert src.is_live
    src.start()
    try:
        first = src.read(timeout=5.0)
        time.sleep(0.4)  # the clip runs on at 30 fps meanwhile
        later = src.read(timeout=5.0)
    finally:
        src.stop()
    assert first is not None and later is not None
    assert later.index == 1 and later.pts > first.pts + 0.2
    assert src.stats.frames_dropped >= 5


def test_stop_is_idempotent_and_releases_a_blocked_reader(sample_clip: Path) -> None:
    src = open_source(SourceConfig(uri=str(sample_clip), queue_size=1))
    src.start()
    time.sleep(0.1)  # the reader thread is now blocked on the full queue
    src.stop()
    src.stop()
    assert src.read(timeout=0.1) is None, "a stopped source delivers nothing"
    assert not any(t.name == "source-sample" for t in threading.enumerate())


def test_frame_queue_newest_wins_and_counts_evictions() -> None:
    q = FrameQueue(2, newest_wins=True)
    frames = [Frame(np.zeros((2, 2, 3), np.uint8), i, i / 30, 0.0) for i in range(5)]
    evicted = sum(q.put(f) for f in frames)
    assert evicted == 3 and len(q) == 2
    got = [q.get(0), q.get(0)]
    assert [f.index for f in got if f is not None] == [3, 4]
    assert q.get(0.01) is None
    q.close()
    assert q.get(None) is None  # closed: returns at once


def test_frame_queue_blocking_mode_waits_for_room_until_closed() -> None:
    q = FrameQueue(1, newest_wins=False)
    f = Frame(np.zeros((2, 2, 3), np.uint8), 0, 0.0, 0.0)
    q.put(f)
    done = threading.Event()
    threading.Thread(target=lambda: (q.put(f), done.set()), daemon=True).start()
    assert not done.wait(0.2), "put must wait while the queue is full"
    assert q.get(0) is f
    assert done.wait(2.0)
    q.close()
    assert q.get(0) is f and q.get(None) is None


def test_timeline_handles_restarts_gaps_and_missing_stamps() -> None:
    tl = Timeline(fps=10.0)
    tl.new_segment(base=5.0)
    out = [tl.map(t) for t in (5.0, 5.1, 5.2, 5.5, 0.0, 0.1, None)]
    pts = [p for p, _ in out]
    lost = [n for _, n in out]
    assert pts[:4] == pytest.approx([0.0, 0.1, 0.2, 0.5])
    assert lost == [0, 0, 0, 2, 0, 0, 0]
    assert pts[4:] == pytest.approx([0.6, 0.7, 0.8]), "a backward jump starts a new segment right after"
    tl.new_segment(None, not_before=3.0)  # a live reconnect after an outage
    assert tl.map(1234.5) == (pytest.approx(3.0), 0), "the outage shows in pts but is not counted as lost"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _write_noise_clip(path: Path, frames: int) -> None:
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"g": "10", "preset": "ultrafast"}
        for _ in range(frames):
            img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
