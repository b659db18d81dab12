"""Recording: real mp4 segments remuxed from the shared H.264 encoder of a real server's demo
camera, read back with PyAV; retention over real files; a folder deleted and a real full disk
(a small tmpfs) while a WebRTC viewer keeps watching."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import av
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from test_fanout import pattern
from test_webrtc import Received

from devtools.viewer import connect_viewer
from streamer.config import (
    AppConfig,
    EnhanceConfig,
    OutputConfig,
    RecordConfig,
    ServerConfig,
    SourceConfig,
)
from streamer.server import RunningServer, start_server
from streamer.server.camera import CameraRunner
from streamer.server.encoder import EncodedFrame, VideoEncoder
from streamer.server.recording import (
    QUEUE_FRAMES,
    RETRY_S,
    Recordings,
    find_recording,
    segment_name,
    segment_start,
)
from streamer.server.tracks import CameraTracks

SEGMENT_S = 2.0


def record_cfg(folder: Path) -> AppConfig:
    return AppConfig(
        sources=(SourceConfig(uri="demo", name="door", demo_width=640, demo_height=360, demo_fps=15.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=2),
        server=ServerConfig(port=0),
        record=RecordConfig(dir=str(folder), segment_s=SEGMENT_S, max_size_mb=10_000),
    )


@pytest_asyncio.fixture
async def recording(tmp_path: Path) -> AsyncIterator[RunningServer]:
    srv = await start_server(record_cfg(tmp_path / "rec"))
    yield srv
    await srv.stop()


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*Z.mp4"))


async def until(condition: object, timeout: float) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)


def decoded(path: Path) -> tuple[list[tuple[int, int]], float]:
    """The (width, height) of every frame, and the file's duration in seconds."""
    with av.open(str(path)) as container:
        sizes = [(f.width, f.height) for f in container.decode(video=0)]
        return sizes, (container.duration or 0) / av.time_base


async def metrics(srv: RunningServer) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{srv.base_url}/metrics", headers={"Authorization": f"Bearer {srv.token}"}) as resp,
    ):
        return await resp.text()


@pytest.mark.asyncio
async def test_segments_play_back_and_a_moment_is_found_in_them(
    recording: RunningServer, tmp_path: Path
) -> None:
    folder = tmp_path / "rec" / "door"
    await until(lambda: len(segments(folder)) >= 3, 90)
    tracks = recording.state.tracks["door"]
    assert set(tracks.encoders) == {("enhanced", "h264", "full")}, "no encoder of its own"
    assert tracks.encoders[("enhanced", "h264", "full")].sinks == 1
    closed = segments(folder)[:2]
    starts = [segment_start(p) for p in closed]
    assert all(s is not None for s in starts)
    lengths = []
    for path in closed:
        sizes, length = await asyncio.to_thread(decoded, path)
        assert len(sizes) >= 2 and set(sizes) == {(1280, 720)}
        lengths.append(length)
    first_start, second_start = starts[0], starts[1]
    assert first_start is not None and second_start is not None
    # A segment rolls on the first keyframe at or past segment_s (asked for when due), and the
    # next one starts there: its name is that keyframe's time, the file ends one frame before.
    gap = second_start - first_start
    assert SEGMENT_S - 0.01 <= gap <= SEGMENT_S + 2.0, gap
    assert gap - 2.0 <= lengths[0] <= gap + 0.05, (lengths[0], gap)
    moment = min(1.0, lengths[0] / 2)
    found = await asyncio.to_thread(find_recording, tmp_path / "rec", "door", first_start + moment)
    assert found is not None and found[0] == closed[0] and found[1] == pytest.approx(moment)
    assert await asyncio.to_thread(find_recording, tmp_path / "rec", "door", first_start - 5) is None
    assert await asyncio.to_thread(find_recording, tmp_path / "rec", "hall", first_start + 1) is None
    text = await metrics(recording)
    assert 'facestream_recording_segments_total{camera="door"}' in text
    assert 'facestream_recording_up{camera="door"} 1.0' in text


def test_retention_drops_by_age_then_oldest_past_the_size(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    folder = root / "door"
    folder.mkdir(parents=True)
    now = time.time()
    old = folder / segment_name(now - 3 * 86400)
    old.write_bytes(b"x" * 1000)
    recent = [folder / segment_name(now - 600 + 60 * i) for i in range(4)]
    for path in recent:
        path.write_bytes(b"x" * 400 * 1024)
    other = folder / "notes.txt"
    other.write_text("not a segment")
    cfg = RecordConfig(dir=str(root), max_age_days=1.0, max_size_mb=1)
    Recordings(cfg, {}, CollectorRegistry()).prune()
    assert not old.exists(), "older than max_age_days"
    assert [p.exists() for p in recent] == [False, False, True, True], "oldest first, down to 1 MB"
    assert other.exists(), "only our segments are touched"


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write until the disk is full (the recorder writing beside it makes the room left move)."""
    with path.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)


def errors(text: str, reason: str) -> float:
    prefix = f'facestream_recording_errors_total{{camera="door",reason="{reason}"}} '
    return next((float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


@pytest.mark.asyncio
async def test_deleted_folder_and_full_disk_never_stop_live_video(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "8m") as disk:
        srv = await start_server(record_cfg(disk))
        got = Received()
        viewer = await connect_viewer(srv.base_url, srv.token, "door", got, tracks=("enhanced",))
        folder = disk / "door"
        try:
            await until(lambda: segments(folder), 90)
            await got.wait(("enhanced",), 5)

            shutil.rmtree(folder)
            await until(lambda: errors(srv.state.metrics.render().decode(), "missing_dir") >= 1, 30)
            seen = len(got.frames["enhanced"])
            await until(lambda: segments(folder), RETRY_S + 30)
            assert len(got.frames["enhanced"]) > seen, "video went on while recording failed"

            fill(disk / "filler")
            await until(lambda: errors(srv.state.metrics.render().decode(), "disk_full") >= 1, 60)
            seen = len(got.frames["enhanced"])
            before = set(segments(folder))
            (disk / "filler").unlink()
            await until(lambda: set(segments(folder)) - before, RETRY_S + 30)
            new = sorted(set(segments(folder)) - before)[0]
            await until(lambda: new.stat().st_size > 10_000, 30)
            assert len(got.frames["enhanced"]) > seen
            text = await metrics(srv)
            assert errors(text, "disk_full") >= 1 and errors(text, "missing_dir") >= 1
        finally:
            await viewer.close()
            await srv.stop()
    assert {(w, h) for w, h, _ in got.frames["enhanced"]} == {(1280, 720)}


def test_a_disk_that_falls_behind_drops_frames_up_to_a_keyframe(tmp_path: Path) -> None:
    cfg = record_cfg(tmp_path / "rec")
    tracks = CameraTracks(CameraRunner(cfg, cfg.sources[0]), cfg.server)
    recordings = Recordings(cfg.record, {"door": tracks}, CollectorRegistry())
    recorder = recordings.recorders["door"]  # not started: its writer never takes a frame
    video = VideoEncoder("h264", 1000)
    packets = [video.encode(pattern(i), keyframe=i % 50 == 0) for i in range(QUEUE_FRAMES + 60)]
    frames = [EncodedFrame(p, bool(p.is_keyframe), i) for i, p in enumerate(packets) if p is not None]
    for frame in frames[:QUEUE_FRAMES]:
        recorder.deliver(frame)
    recorder.deliver(frames[QUEUE_FRAMES])
    assert recorder.encoder.requests["overflow"] == 1
    assert recordings.metrics.dropped.labels("door")._value.get() == 1
    while not recorder._queue.empty():  # the disk catches up
        recorder._queue.get()
    for frame in frames[QUEUE_FRAMES + 1 :]:
        recorder.deliver(frame)
    queued = []
    while not recorder._queue.empty():
        item = recorder._queue.get()
        assert item is not None
        queued.append(item[0].index)
    assert queued and frames[queued[0]].keyframe, "after a drop the recording resumes at a keyframe"
    assert queued == list(range(queued[0], frames[-1].index + 1))
