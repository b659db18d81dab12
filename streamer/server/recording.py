"""Continuous recording of each camera's enhanced stream, as mp4 segments on disk.

Nothing is encoded for it: a `Recorder` is a `PacketSink` of the camera's shared H.264 encoder
(the one RTSP out and H.264 viewers use) and remuxes its packets with PyAV. Segments are
fragmented mp4 (a fragment per keyframe), so a file cut short by a crash or a full disk still
plays up to its last keyframe. A segment starts on a keyframe, at `segment_s` intervals (the
encoder is asked for a keyframe when one is due) or when the picture size changes, and is named
for the wall-clock time (UTC) of its first frame: `DIR/<camera>/20261201T221943.123Z.mp4`.
Inside a file, time is the camera's own publish clock, so `when - start` is the offset of any
moment (`find_recording`, for the face timeline).

Disk work happens in one thread per camera behind a bounded queue; the event loop only hands
packets over. Whatever the disk does (full, folder deleted, unwritable) live video is not touched:
the failure is logged (throttled), counted in /metrics (`facestream_recording_errors_total`),
the segment is closed, and the recorder tries again on a keyframe `RETRY_S` later, recreating the
folder. Retention (`max_age_days`, `max_size_mb`, over all cameras) runs after every segment.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import av
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE
from av.container import OutputContainer
from av.video.stream import VideoStream
from prometheus_client import CollectorRegistry, Counter, Gauge

from streamer.config import RecordConfig
from streamer.server.encoder import EncodedFrame
from streamer.server.log_throttle import ThrottledLog
from streamer.server.tracks import CameraTracks

log = logging.getLogger(__name__)

RETRY_S = 5.0
QUEUE_FRAMES = 150
"""About 10 s at 15 fps waiting for a slow disk before frames are dropped."""
MAX_CLOCK_SLIP_S = 1.0
"""Frames reach the recorder an encode after their pts; more than this apart, the wall clock moved."""
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
NAME_FORMAT = "%Y%m%dT%H%M%S"
SUFFIX = "Z.mp4"


def segment_name(wall: float) -> str:
    stamp = datetime.fromtimestamp(wall, UTC)
    return f"{stamp.strftime(NAME_FORMAT)}.{stamp.microsecond // 1000:03d}{SUFFIX}"


def segment_start(path: Path) -> float | None:
    """The wall time a segment's name gives (None: not one of ours)."""
    if not path.name.endswith(SUFFIX):
        return None
    try:
        stamp = datetime.strptime(path.name[: -len(SUFFIX)], f"{NAME_FORMAT}.%f")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).timestamp()


def camera_dir(root: Path, camera: str) -> Path:
    return root / quote(camera, safe="")


def find_recording(root: Path, camera: str, when: float) -> tuple[Path, float] | None:
    """The segment holding wall time `when` of `camera` and the offset into it in seconds, or
    None where nothing was recorded then. Reads the folder and at most one file's duration."""
    starts = sorted(
        (start, path)
        for path in camera_dir(root, camera).glob(f"*{SUFFIX}")
        if (start := segment_start(path)) is not None and start <= when
    )
    if not starts:
        return None
    start, path = starts[-1]
    try:
        with av.open(str(path)) as container:
            length = (container.duration or 0) / av.time_base
    except (OSError, av.FFmpegError):
        return None
    offset = when - start
    return (path, offset) if offset <= length else None


def sps_pps(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex-B access unit: what tells pictures sizes apart."""
    units = data.split(b"\x00\x00\x01")
    return b"|".join(u.rstrip(b"\x00") for u in units if u and u[0] & 0x1F in (7, 8))


class RecordingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter(
            "facestream_recording_errors",
            "Recording failures (disk_full, missing_dir, io); live video goes on, recording retries",
            ["camera", "reason"],
            registry=registry,
        )
        self.segments = Counter(
            "facestream_recording_segments", "mp4 segments started", ["camera"], registry=registry
        )
        self.dropped = Counter(
            "facestream_recording_dropped_frames",
            "Frames not recorded because the disk fell behind or recording was failing",
            ["camera"],
            registry=registry,
        )
        self.recording = Gauge(
            "facestream_recording_up",
            "1 while the camera's current segment is being written",
            ["camera"],
            registry=registry,
        )
        self.deleted = Counter(
            "facestream_recording_deleted_segments", "Segments removed by retention", registry=registry
        )


def failure_reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if code in (errno.ENOENT, errno.ENOTDIR):
        return "missing_dir"
    return "io"


@dataclass
class Segment:
    path: Path
    container: OutputContainer
    stream: VideoStream
    first_pts: int
    params: bytes


class Recorder:
    """One camera's recording: a sink on the event loop, a writer thread behind a queue."""

    def __init__(self, tracks: CameraTracks, cfg: RecordConfig, owner: Recordings) -> None:
        self.camera = tracks.camera
        self.encoder = tracks.encoder("enhanced", "h264", "full")
        self.cfg = cfg
        self.owner = owner
        self.folder = camera_dir(Path(cfg.dir).expanduser(), self.camera.name)
        self.segment: Segment | None = None
        self._queue: queue.SimpleQueue[tuple[EncodedFrame, float] | None] = queue.SimpleQueue()
        """Bounded by `deliver` to QUEUE_FRAMES frames; the end marker always gets in."""
        self._skip_to_key = False
        self._retry_at = 0.0
        self._asked = False
        self._anchor: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- the event loop side ---------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"record-{self.camera.name}", daemon=True)
        self._thread.start()
        self.camera.viewers += 1  # recording wants every frame, watched or not
        self.encoder.subscribe(self)

    def deliver(self, frame: EncodedFrame) -> None:
        if self._skip_to_key and not frame.keyframe:
            return
        if self._queue.qsize() >= QUEUE_FRAMES:
            self.owner.metrics.dropped.labels(self.camera.name).inc()
            if not self._skip_to_key:
                self.encoder.request_keyframe("overflow")
            self._skip_to_key = True
            return
        self._queue.put((frame, time.time()))
        self._skip_to_key = False

    def end(self) -> None:
        self._queue.put(None)

    async def stop(self) -> None:
        self.encoder.unsubscribe(self)
        self.camera.viewers = max(0, self.camera.viewers - 1)
        self._queue.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)

    def _ask_keyframe(self) -> None:
        """From the writer thread: once per wait for a keyframe (the encoder lives on the loop)."""
        if not self._asked and self._loop is not None and not self._loop.is_closed():
            self._asked = True
            self._loop.call_soon_threadsafe(self.encoder.request_keyframe, "record")

    # -- the writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            frame, wall = item
            try:
                self._write(frame, self._wall(frame, wall))
            except (OSError, av.FFmpegError) as exc:
                self._failed(exc)
        self._close()

    def _wall(self, frame: EncodedFrame, delivered: float) -> float:
        """The wall time of a frame, from its pts: delivery times jitter with the encode, and a
        segment's name must match the file's own timeline. Re-anchored when the wall clock jumps."""
        clock = int(frame.packet.pts or 0) / VIDEO_CLOCK_RATE
        if self._anchor is None or abs(delivered - clock - self._anchor) > MAX_CLOCK_SLIP_S:
            self._anchor = delivered - clock
        return clock + self._anchor

    def _write(self, frame: EncodedFrame, wall: float) -> None:
        packet = frame.packet
        pts = int(packet.pts or 0)
        segment = self.segment
        if segment is not None and frame.keyframe:
            due = pts - segment.first_pts >= self.cfg.segment_s * VIDEO_CLOCK_RATE
            if not segment.path.exists():  # deleted under us: the writes would go nowhere
                raise FileNotFoundError(errno.ENOENT, "the recording folder was removed", str(segment.path))
            if due or sps_pps(bytes(packet)) != segment.params:
                self._close()
                segment = None
        if segment is None:
            if not frame.keyframe or time.monotonic() < self._retry_at:
                if time.monotonic() >= self._retry_at:
                    self._ask_keyframe()
                self.owner.metrics.dropped.labels(self.camera.name).inc()
                return
            segment = self.segment = self._open(frame, wall)
        elif pts - segment.first_pts >= self.cfg.segment_s * VIDEO_CLOCK_RATE:
            self._ask_keyframe()
        copy = av.Packet(bytes(packet))  # the shared packet is every sink's: never touched
        copy.pts = copy.dts = pts - segment.first_pts
        copy.time_base = VIDEO_TIME_BASE
        copy.is_keyframe = frame.keyframe
        copy.stream = segment.stream
        segment.container.mux(copy)

    def _open(self, frame: EncodedFrame, wall: float) -> Segment:
        data = bytes(frame.packet)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / segment_name(wall)
        with av.open(io.BytesIO(data), format="h264") as parsed:  # codec parameters from the keyframe
            container = av.open(str(path), "w", format="mp4", options=FRAGMENTED)
            stream = container.add_stream_from_template(parsed.streams.video[0])
        stream.time_base = VIDEO_TIME_BASE
        self._asked = False
        self.owner.metrics.segments.labels(self.camera.name).inc()
        self.owner.metrics.recording.labels(self.camera.name).set(1)
        log.debug("camera %s: recording %s", self.camera.name, path)
        return Segment(path, container, stream, int(frame.packet.pts or 0), sps_pps(data))

    def _close(self) -> None:
        segment, self.segment = self.segment, None
        if segment is None:
            return
        self.owner.metrics.recording.labels(self.camera.name).set(0)
        try:
            segment.container.close()
        except (OSError, av.FFmpegError) as exc:
            self._failed(exc)
        self.owner.prune()

    def _failed(self, exc: BaseException) -> None:
        reason = failure_reason(exc)
        self.owner.metrics.errors.labels(self.camera.name, reason).inc()
        self.owner.error_log.warning(
            "camera %s: recording failed (%s: %s); live video goes on, retrying in %.0f s",
            self.camera.name,
            reason,
            exc,
            RETRY_S,
        )
        segment, self.segment = self.segment, None
        if segment is not None:
            self.owner.metrics.recording.labels(self.camera.name).set(0)
            try:
                segment.container.close()
            except (OSError, av.FFmpegError):
                pass  # the same disk error again: the file keeps what its fragments hold
        self._retry_at = time.monotonic() + RETRY_S
        self._asked = False


class Recordings:
    """Every camera's recorder, and the retention over their common folder."""

    def __init__(
        self, cfg: RecordConfig, tracks: dict[str, CameraTracks], registry: CollectorRegistry
    ) -> None:
        self.cfg = cfg
        self.root = Path(cfg.dir).expanduser()
        self.metrics = RecordingMetrics(registry)
        self.error_log = ThrottledLog(log)
        self.recorders = {name: Recorder(t, cfg, self) for name, t in tracks.items()}
        self._prune_lock = threading.Lock()

    def start(self) -> None:
        self.prune()
        for recorder in self.recorders.values():
            recorder.start()
        log.info("recording every camera's enhanced stream into %s", self.root)

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.recorders.values()))

    def prune(self) -> None:
        """Drop segments past `max_age_days`, then the oldest until all fit in `max_size_mb`;
        never a segment being written. From any writer thread."""
        with self._prune_lock:
            writing = {r.segment.path for r in self.recorders.values() if r.segment is not None}
            found = sorted(
                (start, path)
                for path in self.root.glob(f"*/*{SUFFIX}")
                if (start := segment_start(path)) is not None and path not in writing
            )
            total = sum(map(_size, writing)) + sum(_size(path) for _, path in found)
            cutoff = time.time() - self.cfg.max_age_days * 86400
            budget = self.cfg.max_size_mb * 1024 * 1024
            for start, path in found:
                if start >= cutoff and total <= budget:
                    break
                size = _size(path)
                try:
                    path.unlink()
                except OSError:
                    continue
                total -= size
                self.metrics.deleted.inc()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
