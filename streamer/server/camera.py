"""One camera: a thread that reads the source (newest frame wins), runs the pipeline, and
publishes the newest result for the video tracks, the WebSocket and the metrics.

Its `status` is what health checks report: the source's own state (connecting, live,
reconnecting with the attempt count and last error, ended, stopped), or `stalled` when the source
says live but no frame came out of the pipeline for STALE_AFTER_S; `fps` counts the silence too,
so it falls to 0 when frames stop instead of keeping the last rate.

The pipeline is blocking CPU work, so it never runs on the event loop; the loop is only told
(call_soon_threadsafe) that something new is there. Everything a viewer needs that costs CPU
once per frame (BGR -> YUV conversion, latency stamp, per-frame JSON, face thumbnails) is done
here, once, not per viewer; and only when someone is watching.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import av
import cv2
import numpy as np
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE

from streamer.config import AppConfig, SourceConfig
from streamer.provenance import NOTE
from streamer.run_loop import Processor, run_source
from streamer.server.latency import INDEX_MASK, LatencyLog, draw_stamp
from streamer.server.metrics import Metrics
from streamer.sources.base import FrameSource
from streamer.timeline import FaceTimeline
from streamer.types import Frame, FrameResult

log = logging.getLogger(__name__)

THUMB_INTERVAL_S = 0.5
THUMB_TTL_S = 3.0
THUMB_MAX = 12
FPS_WINDOW_S = 5.0
STALE_AFTER_S = 5.0


ProcessorFactory = Callable[[AppConfig, str], Processor]


@dataclass(frozen=True)
class CameraStatus:
    """starting (pipeline being built), error (could not start: see CameraRunner.error), or the
    source's state (see SourceStatus), with `stalled` for a live source whose frames stopped."""

    state: str
    attempt: int = 0
    last_error: str | None = None

    @property
    def up(self) -> bool:
        return self.state == "live"


def recent_fps(times: Sequence[float], now: float, window_s: float = FPS_WINDOW_S) -> float:
    """Frames per second over the publish times of the last `window_s`. While frames come it is
    their rate; once they stop, the silence beyond one usual gap counts as well, so the figure
    falls smoothly and reaches 0 when the window holds fewer than two frames."""
    recent = [t for t in times if now - t <= window_s]
    if len(recent) < 2 or recent[-1] <= recent[0]:
        return 0.0
    span = recent[-1] - recent[0]
    silence = max(0.0, now - recent[-1] - span / (len(recent) - 1))
    return (len(recent) - 1) / (span + silence)


def default_processor(cfg: AppConfig, name: str) -> Processor:
    from streamer.pipeline import Pipeline

    return Pipeline(cfg, name)


def yuv_frame(image: np.ndarray) -> av.VideoFrame:
    """A BGR picture as the yuv420p frame the encoders take, converted once per frame for all
    viewers so each viewer's encoder skips its own conversion. OpenCV's I420 conversion measured
    2-3x faster than PyAV's swscale at 720p, same BT.601 result."""
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
    yuv = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


WATCHED_S = 2.0
"""A track kind asked for within this many seconds is converted for the encoders in the camera
thread; the others are not converted at all unless a track asks (the dashboard can show the
enhanced track alone, and the latency bench watches it alone)."""


@dataclass
class Published:
    """The newest result of a camera, with what the viewers need already prepared.

    `original` and `enhanced` are the yuv420p frames the tracks send. A kind that no track
    asked for lately was not converted in the camera thread: the first ask converts it here
    (once per result) and marks the kind watched, so the next results come prepared."""

    seq: int
    result: FrameResult
    published_at: float
    frames: dict[str, av.VideoFrame | None]
    meta_json: str
    prepare: Callable[[str, FrameResult, float], av.VideoFrame]
    asked: dict[str, float]

    def _frame(self, kind: str) -> av.VideoFrame:
        self.asked[kind] = time.monotonic()
        frame = self.frames.get(kind)
        if frame is None:
            frame = self.frames[kind] = self.prepare(kind, self.result, self.published_at)
        return frame

    @property
    def original(self) -> av.VideoFrame:
        return self._frame("original")

    @property
    def enhanced(self) -> av.VideoFrame:
        return self._frame("enhanced")


class CameraRunner:
    def __init__(
        self,
        cfg: AppConfig,
        source: SourceConfig,
        metrics: Metrics | None = None,
        processor_factory: ProcessorFactory | None = None,
        latency_log: LatencyLog | None = None,
    ) -> None:
        self.cfg = cfg
        self.name = source.display_name
        self.source_cfg = source
        self.metrics = metrics
        self.processor_factory = processor_factory or default_processor
        self.latency_log = latency_log
        self.stamp = cfg.server.stamp_frames
        self.processor: Processor | None = None
        self.timeline: FaceTimeline | None = None
        self.error: str | None = None
        self.viewers = 0
        self.ws_clients = 0
        self._latest: Published | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._on_publish: list[Callable[[], None]] = []
        self._times: deque[float] = deque(maxlen=60)
        self._thumbs: dict[int, tuple[float, str]] = {}
        self._thumbs_json = ""
        self._thumbs_seq = 0
        self._last_thumbs = 0.0
        self._source_fps = 0.0
        self._dropped = 0
        self._source: FrameSource | None = None
        self._started_at = time.monotonic()
        self._clock_origin: float | None = None
        self._asked: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("camera %s: thread did not stop within %.0f s", self.name, timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_ready(self, timeout: float) -> bool:
        """True once the pipeline is built and the source opened (or failed: see `error`)."""
        return self._ready.wait(timeout)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback` runs on the event loop after every publish."""
        self._on_publish.append(callback)

    # -- what the loop side reads ------------------------------------------------------------
    @property
    def latest(self) -> Published | None:
        return self._latest

    @property
    def fps(self) -> float:
        return recent_fps(list(self._times), time.monotonic())

    @property
    def last_frame_age(self) -> float:
        """Seconds since the newest publish (since start, before the first)."""
        latest = self._latest
        return time.monotonic() - (latest.published_at if latest is not None else self._started_at)

    @property
    def status(self) -> CameraStatus:
        source = self._source
        if self.error is not None:
            return CameraStatus("error", last_error=self.error)
        if source is None or source.status.state == "idle":
            return CameraStatus("starting")
        s = source.status
        if s.state == "live" and not self.alive:
            return CameraStatus("stopped")
        latest = self._latest
        newest = max(s.since, latest.published_at if latest is not None else 0.0)
        if s.state == "live" and time.monotonic() - newest > STALE_AFTER_S:
            return CameraStatus("stalled", s.attempt, f"no frame for {time.monotonic() - newest:.0f} s")
        return CameraStatus(s.state, s.attempt, s.last_error)

    def watched(self, kind: str) -> bool:
        """Whether a track asked for `kind` within WATCHED_S, so its frames come converted."""
        return time.monotonic() - self._asked.get(kind, -WATCHED_S) < WATCHED_S

    @property
    def thumbs(self) -> tuple[int, str]:
        return self._thumbs_seq, self._thumbs_json

    async def wait_newer(self, seq: int, timeout: float | None = None) -> Published | None:
        """The newest result with a sequence number above `seq`, waiting for one if needed;
        None on timeout or when the camera has stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            latest = self._latest
            if latest is not None and latest.seq > seq:
                return latest
            if self._stop.is_set() or self._event is None:
                return None
            event = self._event
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining or 1.0, 1.0))
            except TimeoutError:
                continue

    def _wake(self) -> None:
        """On the loop: release everyone waiting for the previous result."""
        event, self._event = self._event, asyncio.Event()
        if event is not None:
            event.set()
        for callback in self._on_publish:
            callback()

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        from streamer.sources import open_source

        source = None
        try:
            self.processor = self.processor_factory(self.cfg, self.name)
            source = self._source = open_source(self.source_cfg, live=self.cfg.live)
            source.start()
            self._source_fps = float(getattr(source, "fps", 0.0) or 0.0)
        except Exception as exc:  # reported on /healthz and the dashboard; the other cameras go on
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("camera %s: cannot start: %s", self.name, self.error)
            self._ready.set()
            if source is not None:
                source.stop()
            return
        self._ready.set()
        failures = 0

        def failed(frame: Frame, exc: Exception) -> None:
            nonlocal failures
            failures += 1
            if self.metrics is not None:
                self.metrics.errors.labels(self.name).inc()
            if failures in (1, 10) or failures % 100 == 0:
                log.error(
                    "camera %s: frame %d failed (%d so far)", self.name, frame.index, failures, exc_info=exc
                )

        def publish(result: FrameResult) -> None:
            self._dropped = int(source.stats.frames_dropped)
            self._publish(result, time.monotonic())

        try:
            run_source(self.processor, source, publish, self._stop, on_error=failed)
            self._stop.wait()  # a file without --loop ended: keep showing its last picture
        finally:
            source.stop()
            self.processor.close()
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._wake)

    def _publish(self, result: FrameResult, processed: float) -> None:
        frame = result.frame
        frames: dict[str, av.VideoFrame | None] = {}
        published = time.monotonic()
        if self.viewers > 0:
            for kind in ("original", "enhanced"):
                if self.watched(kind):
                    frames[kind] = self._prepare(kind, result, published)
        self._times.append(published)
        fps = self.fps
        if self.metrics is not None:
            self.metrics.observe(self.name, result, processed - frame.capture_time, self._dropped)
        if self.latency_log is not None:
            marks = {
                "capture": frame.capture_time,
                "start": result.started,
                "processed": processed,
                "published": published,
            }
            marks.update({f"stage_{k}": v for k, v in result.times.seconds.items()})
            self.latency_log.mark(frame.index & INDEX_MASK, marks)
        if self.timeline is not None:
            processor = self.processor
            engine = processor.backend_name if processor is not None else ""
            self.timeline.offer(self.name, result, time.time() - (published - frame.capture_time), engine)
        if self.ws_clients > 0 and published - self._last_thumbs >= THUMB_INTERVAL_S:
            self._update_thumbs(result, published)
        self._seq += 1
        self._latest = Published(
            self._seq,
            result,
            published,
            frames,
            self._meta_json(result, fps, processed),
            self._prepare,
            self._asked,
        )
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # loop closed between the check and the call: shutting down
                pass

    def _prepare(self, kind: str, result: FrameResult, published: float) -> av.VideoFrame:
        """The yuv420p frame of `kind`, with its timestamp on the publish clock, set once here:
        every encoder that reads the frame (one per viewer, or the shared ones, from several
        threads) then sees the same pts and none writes to a frame another one is reading; and
        the receiver's jitter buffer sees the pipeline's true cadence, not a fixed frame rate."""
        image = result.frame.image if kind == "original" else result.output
        frame = self._video_frame(kind, result.frame.index, image)
        if self._clock_origin is None:
            self._clock_origin = published
        frame.pts = round((published - self._clock_origin) * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def _video_frame(self, kind: str, index: int, image: np.ndarray) -> av.VideoFrame:
        if self.stamp:
            image = image.copy()
            draw_stamp(image, index)
            if self.latency_log is not None:
                self.latency_log.keep_image(kind, index & INDEX_MASK, image)
        return yuv_frame(image)

    def _meta_json(self, result: FrameResult, fps: float, processed: float) -> str:
        frame = result.frame
        h, w = frame.image.shape[:2]
        oh, ow = result.output.shape[:2]
        processor = self.processor
        return json.dumps(
            {
                "type": "frame",
                "camera": self.name,
                "index": frame.index,
                "fps": round(fps, 2),
                "source_fps": round(self._source_fps, 2),
                "frame_size": [w, h],
                "output_size": [ow, oh],
                "faces": len(result.faces),
                "enhanced": bool(result.faces),
                "tracks": [
                    {"id": int(t.track_id), "box": [round(float(v), 1) for v in t.box]} for t in result.tracks
                ],
                "stages_ms": {k: round(v * 1e3, 2) for k, v in result.times.seconds.items()},
                "pipeline_ms": round((processed - frame.capture_time) * 1e3, 1),
                "dropped": self._dropped,
                "backend": processor.backend_name if processor is not None else "",
                "controls": processor.controls if processor is not None else {},
                "viewers": self.viewers,
            }
        )

    def _update_thumbs(self, result: FrameResult, now: float) -> None:
        """Latest enhanced crop per live track as small JPEGs; a track that ended leaves the strip."""
        for face in result.faces:
            ok, buf = cv2.imencode(".jpg", face.image, [cv2.IMWRITE_JPEG_QUALITY, 82])
            if ok:
                self._thumbs[int(face.track_id)] = (now, base64.b64encode(buf.tobytes()).decode("ascii"))
        alive = {int(t.track_id) for t in result.tracks}
        self._thumbs = {k: v for k, v in self._thumbs.items() if k in alive and now - v[0] <= THUMB_TTL_S}
        newest = sorted(self._thumbs.items(), key=lambda kv: kv[0])[-THUMB_MAX:]
        self._thumbs_json = json.dumps(
            {
                "type": "faces",
                "camera": self.name,
                "faces": [{"id": tid, "jpeg": b64, "enhanced": True} for tid, (_, b64) in newest],
                "note": NOTE,
            }
        )
        self._thumbs_seq += 1
        self._last_thumbs = now
