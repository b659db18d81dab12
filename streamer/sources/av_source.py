"""Frames from anything FFmpeg can read, through PyAV: files, RTSP, HTTP(S), V4L2 webcams.

One reader thread per source owns the container (PyAV objects are not shared across threads); it
demuxes and decodes packet by packet so a corrupt packet costs one packet, not the stream. Files
keep every frame (blocking hand-off) unless `live` makes them behave like a camera; live
sources hand over newest-wins and re-open with exponential backoff when the stream is lost.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import av
import av.container
import numpy as np

from streamer.config import SourceConfig
from streamer.sources.base import BaseSource, FrameQueue, SourceError, SourceStats
from streamer.types import Frame

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp")
_STOP_GRACE_S = 2.0
_MAX_DEMUX_ERRORS_IN_A_ROW = 100


def classify(uri: str) -> str:
    """Return `file`, `network` or `webcam` for a source URI; raise SourceError for other schemes."""
    if uri.startswith("/dev/video"):
        return "webcam"
    scheme = urlsplit(uri).scheme.lower()
    if scheme in NETWORK_SCHEMES:
        return "network"
    if "://" in uri and scheme != "file":
        raise SourceError(
            f"source {uri!r}: unsupported scheme {scheme!r}; use a file path, /dev/videoN, "
            f"demo, or one of {', '.join(NETWORK_SCHEMES)}"
        )
    return "file"


def without_credentials(uri: str) -> str:
    """`uri` without its user:password@, for status that leaves the process (health, dashboard)."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


class _Lost(Exception):
    """The live stream broke off (read error, timeout or end of stream); the reader re-opens it."""

    def __init__(self, reason: str, decoded: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decoded = decoded


class Timeline:
    """Turns stream timestamps into seconds since the source started, always increasing.

    A segment starts at each (re)open and at each backward jump in the stream's own timestamps
    (looped files, concatenated streams, a camera that restarted); within a segment the stream's
    spacing is kept exactly, so an output file has the input's timing. Forward gaps larger than
    1.5 frame durations inside a segment are reported as lost frames (an outage between two
    connections is not: reconnects are counted on their own).
    """

    def __init__(self, fps: float, count_gaps: bool = True) -> None:
        self.step = 1.0 / fps if fps > 0 else 1.0 / 30.0
        self.count_gaps = count_gaps
        self.last_out: float | None = None
        self._last_raw: float | None = None
        self._base: float | None = None
        self._offset = 0.0
        self._fresh = True

    def new_segment(self, base: float | None = None, not_before: float = 0.0) -> None:
        """Start a segment whose first raw timestamp is `base` (None: the next frame's)."""
        self._base = base
        self._offset = 0.0 if self.last_out is None else self.last_out + self.step
        self._offset = max(self._offset, not_before)
        self._last_raw = None
        self._fresh = True

    def map(self, raw: float | None) -> tuple[float, int]:
        """Return (pts seconds, frames lost before this one) for a frame stamped `raw`."""
        if raw is None:
            raw = 0.0 if self._last_raw is None else self._last_raw + self.step
        if self._last_raw is not None and raw < self._last_raw - self.step / 2:
            self.new_segment(raw)
        if self._base is None:
            self._base = raw
        out = max(self._offset + raw - self._base, self._offset)
        lost = 0
        if self.last_out is not None:
            gap = out - self.last_out
            if self.count_gaps and not self._fresh and gap > 1.5 * self.step:
                lost = round(gap / self.step) - 1
            if gap <= 0:
                out = self.last_out + 1e-3
        self._fresh = False
        self._last_raw = raw
        self.last_out = out
        return out, lost


def _reason(exc: BaseException, elapsed: float, timeout: float) -> str:
    if isinstance(exc, av.error.ExitError) or elapsed >= 0.95 * timeout:
        return f"timed out after {timeout:g} s"
    if isinstance(exc, FileNotFoundError):
        return "no such file or device"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return str(getattr(exc, "strerror", None) or exc).strip().rstrip(".")


class AvSource(BaseSource):
    """A PyAV-decoded source. `fps` is known once `start()` returns (or, for a live source
    started with `retry_at_start`, once it first connects). A stopped source is not restarted:
    open a new one."""

    def __init__(self, cfg: SourceConfig, live: bool = False) -> None:
        self.cfg = cfg
        self.name = cfg.display_name
        self.kind = classify(cfg.uri)
        self.uri = cfg.uri[len("file://") :] if cfg.uri.startswith("file://") else cfg.uri
        self.is_live = self.kind != "file" or live
        self.fps = 0.0
        self.stats = SourceStats()
        self.ended = False
        self._queue = FrameQueue(cfg.queue_size, newest_wins=self.is_live)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._timeline: Timeline | None = None
        self._size: tuple[int, int] | None = None
        self._warned_sizes: set[tuple[int, int]] = set()
        self._delivered = 0
        self._first_frame_at: float | None = None
        self._pace_origin: float | None = None

    # -- public API -------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        container = None
        if self.kind == "file":
            self._check_file()
        if self.kind == "webcam" and not Path(self.uri).exists():
            raise SourceError(
                f"source {self.uri!r}: no such video device (list cameras with `ls /dev/video*`)"
            )
        if self.kind == "file" or not self.cfg.retry_at_start:
            container = self._open()
        self._set_state("live" if container is not None else "connecting")
        self._thread = threading.Thread(
            target=self._run, args=(container,), name=f"source-{self.name}", daemon=True
        )
        self._thread.start()
        self._started = True

    def read(self, timeout: float | None = None) -> Frame | None:
        if not self._started:
            raise RuntimeError(f"source {self.name!r}: call start() before read()")
        if self.ended or self._stop.is_set():
            return None
        frame = self._queue.get(timeout)
        if frame is None:
            if self._queue.closed:
                self.ended = True
            return None
        frame.index = self._delivered
        self._delivered += 1
        return frame

    def stop(self) -> None:
        self._stop.set()
        self._queue.close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            # A blocked FFmpeg read returns within its read timeout (open_timeout_s).
            thread.join(self.cfg.open_timeout_s + _STOP_GRACE_S)
            if thread.is_alive():
                log.warning("source %r: reader thread did not stop in time; leaving it to exit", self.name)
        self._set_state("stopped")

    # -- opening ----------------------------------------------------------------------------

    def _check_file(self) -> None:
        path = Path(self.uri)
        if not path.exists():
            raise SourceError(f"source {self.uri!r}: no such file")
        if path.is_dir():
            raise SourceError(f"source {self.uri!r}: is a directory, not a video file")
        if path.stat().st_size == 0:
            raise SourceError(f"source {self.uri!r}: file is empty (0 bytes)")

    def _open(self) -> av.container.InputContainer:
        """Open the container and pick its first video stream; raise SourceError saying why not."""
        options: dict[str, str] = {}
        fmt = None
        if urlsplit(self.uri).scheme.lower() in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self.cfg.rtsp_transport
        if self.kind == "webcam":
            fmt = "v4l2"
        if self.kind != "file":
            # FFmpeg probes 5 s of a live stream by default before the first frame; 1 s is enough
            # to find the codec and rate, and makes (re)connecting that much faster.
            options["analyzeduration"] = "1000000"
        timeout = self.cfg.open_timeout_s
        t0 = time.monotonic()
        try:
            container = av.open(self.uri, mode="r", format=fmt, options=options, timeout=(timeout, timeout))
        except (av.error.FFmpegError, OSError) as exc:
            reason = _reason(exc, time.monotonic() - t0, timeout)
            if self.kind == "file" and isinstance(exc, av.error.InvalidDataError):
                reason = f"not a video file FFmpeg can read ({reason})"
            raise SourceError(f"source {self.uri!r}: cannot open: {reason}") from None
        if not container.streams.video:
            kinds = ", ".join(sorted({str(s.type) for s in container.streams})) or "none"
            container.close()
            raise SourceError(f"source {self.uri!r}: has no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        # Frame threading is fastest for files but holds back several frames: bad for live latency.
        stream.thread_type = "AUTO" if self.kind == "file" else "SLICE"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        self.fps = fps if 0 < fps <= 1000 else 30.0
        if self._timeline is None:
            self._timeline = Timeline(self.fps, count_gaps=container.format.name != "gif")
        if self.kind == "file":
            base = container.start_time / av.time_base if container.start_time is not None else None
            self._timeline.new_segment(base)
        else:
            # After an outage the clock resumes at the wall time elapsed, so the gap stays visible.
            first = self._first_frame_at
            self._timeline.new_segment(None, not_before=0.0 if first is None else time.monotonic() - first)
        return container

    # -- reader thread ----------------------------------------------------------------------

    def _run(self, container: av.container.InputContainer | None) -> None:
        backoff = self.cfg.reconnect_initial_s
        opened_before = container is not None
        try:
            while not self._stop.is_set():
                if container is None:
                    try:
                        container = self._open()
                    except SourceError as exc:
                        if self.kind == "file":
                            log.error("%s", exc)
                            return
                        error = str(exc).replace(self.uri, without_credentials(self.uri))
                        self._set_state("reconnecting" if opened_before else "connecting", error)
                        log.warning("%s; retrying in %.1f s", exc, backoff)
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.cfg.reconnect_max_s)
                        continue
                    if opened_before and self.kind != "file":
                        self.stats.reconnects += 1
                        log.info("source %r: reconnected (%d so far)", self.name, self.stats.reconnects)
                    opened_before = True
                self._set_state("live")
                try:
                    decoded = self._pump(container)
                    reason = "end of stream"
                except _Lost as exc:
                    decoded, reason = exc.decoded, exc.reason
                finally:
                    container.close()
                    container = None
                if self._stop.is_set():
                    return
                if self.kind == "file":
                    if not self.cfg.loop:
                        return
                    if decoded == 0:
                        log.error("source %r: no decodable frame in a whole pass; stopping", self.name)
                        return
                    continue
                if decoded:
                    backoff = self.cfg.reconnect_initial_s
                self._set_state("reconnecting", f"stream lost: {reason}")
                log.warning("source %r: stream lost (%s); reconnecting in %.1f s", self.name, reason, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg.reconnect_max_s)
        except Exception:
            log.exception("source %r: reader thread failed", self.name)
        finally:
            if container is not None:
                container.close()
            if not self._stop.is_set():
                self._set_state("ended")
            self._queue.close()

    def _pump(self, container: av.container.InputContainer) -> int:
        """Decode until end of stream; return the frame count. Live read errors raise _Lost."""
        stream = container.streams.video[0]
        packets = container.demux(stream)
        decoded = 0
        errors_in_a_row = 0
        while not self._stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                if self.kind != "file":
                    raise _Lost("end of stream", decoded) from None
                return decoded
            except (av.error.FFmpegError, OSError) as exc:
                if self.kind != "file":
                    raise _Lost(_reason(exc, 0.0, self.cfg.open_timeout_s), decoded) from None
                if isinstance(exc, av.error.EOFError):
                    return decoded
                self.stats.corrupt_packets += 1
                errors_in_a_row += 1
                if errors_in_a_row > _MAX_DEMUX_ERRORS_IN_A_ROW:
                    log.error(
                        "source %r: %d read errors in a row, giving up: %s", self.name, errors_in_a_row, exc
                    )
                    return decoded
                packets = container.demux(stream)
                continue
            errors_in_a_row = 0
            if packet.is_corrupt:
                self.stats.corrupt_packets += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                self.stats.corrupt_packets += 1
                log.debug("source %r: skipped a packet that failed to decode: %s", self.name, exc)
                continue
            for frame in frames:
                self._deliver(frame)
                decoded += 1
        return decoded

    def _deliver(self, frame: av.VideoFrame) -> None:
        size = (frame.width, frame.height)
        if self._size is not None and size != self._size:
            self.stats.resolution_changes += 1
            log.info("source %r: resolution changed %dx%d -> %dx%d", self.name, *self._size, *size)
        self._size = size
        if frame.is_corrupt:
            self.stats.corrupt_packets += 1
        try:
            image = self._to_bgr(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            self.stats.corrupt_packets += 1
            log.warning(
                "source %r: skipped a %s frame that could not be converted to BGR: %s",
                self.name,
                frame.format.name,
                exc,
            )
            return
        assert self._timeline is not None
        pts, lost = self._timeline.map(frame.time)
        self.stats.frames_lost += lost
        self.stats.frames_read += 1
        if self.kind == "file" and self.is_live:
            self._pace(pts)
        now = time.monotonic()
        if self._first_frame_at is None:
            self._first_frame_at = now
        out = Frame(image=image, index=-1, pts=pts, capture_time=now)
        self.stats.frames_dropped += self._queue.put(out)

    def _to_bgr(self, frame: av.VideoFrame) -> np.ndarray:
        """BGR uint8, downscaled (keeping the aspect ratio) when above max_pixels."""
        w, h = frame.width, frame.height
        if w * h <= self.cfg.max_pixels:
            return np.ascontiguousarray(frame.to_ndarray(format="bgr24"))
        s = math.sqrt(self.cfg.max_pixels / (w * h))
        nw, nh = max(2, int(w * s) // 2 * 2), max(2, int(h * s) // 2 * 2)
        self.stats.oversized_frames += 1
        if (w, h) not in self._warned_sizes:
            self._warned_sizes.add((w, h))
            log.warning(
                "source %r: %dx%d frame is above max_pixels=%d; downscaling to %dx%d",
                self.name,
                w,
                h,
                self.cfg.max_pixels,
                nw,
                nh,
            )
        small = frame.reformat(width=nw, height=nh, format="bgr24", interpolation="AREA")
        return np.ascontiguousarray(small.to_ndarray())

    def _pace(self, pts: float) -> None:
        """Hold a live file's frame until its time comes, as a camera would deliver it."""
        now = time.monotonic()
        if self._pace_origin is None:
            self._pace_origin = now - pts
        delay = self._pace_origin + pts - now
        if delay > 0:
            self._stop.wait(delay)
