"""Writing the composited frames to an mp4 file.

Every frame keeps the presentation time it had in the source, so the output has the same frame
count and timing as the input, variable frame rate included. Audio from a file source is copied
packet for packet (no re-encode), interleaved with the video as it is written.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)


class SinkError(RuntimeError):
    """The output file cannot be written (bad path, unsupported size)."""


class Mp4Sink:
    def __init__(
        self,
        path: str | Path,
        fps: float,
        crf: int = 20,
        audio_from: str | None = None,
        preset: str = "veryfast",
    ) -> None:
        self.path = Path(path)
        if not self.path.parent.exists():
            raise SinkError(f"output folder does not exist: {self.path.parent}")
        self.fps = fps if fps and fps > 0 else 30.0
        self.crf = crf
        self.preset = preset
        self._audio_from = audio_from
        self._container: av.container.OutputContainer | None = None
        self._video: av.video.stream.VideoStream | None = None
        self._size: tuple[int, int] | None = None
        self._resized_warned = False
        self._last_pts = -1
        self._audio_in: av.container.InputContainer | None = None
        self._audio_out: av.stream.Stream | None = None
        self._audio_packets: object = None
        self._audio_pending: av.Packet | None = None
        self.frames_written = 0
        self.audio_packets_written = 0

    def _open(self, width: int, height: int) -> None:
        try:
            self._container = av.open(str(self.path), "w")
        except (av.FFmpegError, OSError) as exc:
            raise SinkError(f"cannot write {self.path}: {exc}") from None
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._video = stream
        self._size = (width, height)
        if self._audio_from:
            self._open_audio(self._audio_from)

    def _open_audio(self, source: str) -> None:
        try:
            inp = av.open(source)
        except (av.FFmpegError, OSError):
            return
        if not inp.streams.audio:
            inp.close()
            return
        assert self._container is not None
        try:
            self._audio_out = self._container.add_stream_from_template(inp.streams.audio[0])
        except (av.FFmpegError, ValueError) as exc:
            log.warning("audio of %s cannot be copied into mp4 (%s): dropped", source, exc)
            inp.close()
            return
        self._audio_in = inp
        self._audio_packets = iter(inp.demux(inp.streams.audio[0]))

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy source audio packets up to `seconds` (all of them when None)."""
        if self._audio_in is None or self._audio_out is None:
            return
        assert self._container is not None
        while True:
            pkt = self._audio_pending
            if pkt is None:
                try:
                    pkt = next(self._audio_packets)  # type: ignore[call-overload]
                except (StopIteration, av.FFmpegError):
                    self._audio_in.close()
                    self._audio_in = None
                    return
                if pkt.dts is None:
                    continue
            if seconds is not None and pkt.pts is not None and float(pkt.pts * pkt.time_base) > seconds:
                self._audio_pending = pkt
                return
            self._audio_pending = None
            pkt.stream = self._audio_out
            self._container.mux(pkt)
            self.audio_packets_written += 1

    def write(self, image: np.ndarray, pts_seconds: float) -> None:
        h, w = image.shape[:2]
        if self._container is None:
            self._open(w + (w & 1), h + (h & 1))
        assert self._size is not None and self._video is not None and self._container is not None
        if (w, h) != self._size:
            if (w + (w & 1), h + (h & 1)) != self._size and not self._resized_warned:
                log.warning(
                    "output size changed from %dx%d to %dx%d: resizing to the first size", *self._size, w, h
                )
                self._resized_warned = True
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        pts = int(round(pts_seconds / TIME_BASE))
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = pts
        frame.time_base = TIME_BASE
        self._mux_audio_until(pts_seconds)
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        assert self._video is not None
        for packet in self._video.encode(None):
            self._container.mux(packet)
        end = (self._last_pts + 1) * TIME_BASE + 1 / self.fps
        self._mux_audio_until(float(end))
        if self._audio_in is not None:
            self._audio_in.close()
        self._container.close()
        self._container = None
