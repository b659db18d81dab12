"""One video encoder per camera track, codec and rendition, shared by every viewer of it.

aiortc encodes once per RTCRtpSender (MediaRelay fans out frames, not packets), so each viewer
used to cost a full encode. aiortc 1.16's sender packetizes anything that is not an `av.Frame`
with the negotiated codec's `pack()` (`Vp8Encoder.pack`, `H264Encoder.pack`), which reads only
the packet's bytes, `pts` and `time_base`: so the encoders here turn each published frame into
one `av.Packet` (VP8, or H.264 constrained baseline in Annex-B with SPS/PPS in band before every
IDR), and each viewer's sender only packetizes and encrypts it.

What that path does not do by itself, and what is done here instead:
- Keyframes. PLI/FIR only set a flag that aiortc reads on its own encode path, so a viewer who
  joins or loses packets would wait for the next keyframe. `SharedEncoder.request_keyframe`
  takes those requests (forwarded from each sender by signaling.forward_keyframe_requests),
  rate-limited by `keyframe_min_gap_s` since one lossy viewer would otherwise make every
  viewer's stream all keyframes; a new subscriber gets one on the next frame; and
  `keyframe_interval_s` bounds the wait when a request is lost.
- Bitrate. One encode cannot follow each viewer's bandwidth estimate (REMB goes nowhere);
  renditions (a full and a low bitrate one) are the choice a viewer gets instead.

Receivers are `PacketSink`s, fed on the event loop: the aiortc viewer tracks (tracks.PacketTrack)
are one kind, a forwarder of RTP to an external SFU would be another beside them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, cast

import av
from aiortc.codecs.vpx import number_of_threads
from aiortc.mediastreams import VIDEO_TIME_BASE
from av.video.codeccontext import VideoCodecContext

from streamer.config import ServerConfig
from streamer.server.camera import CameraRunner, Published
from streamer.server.latency import INDEX_MASK, LatencyLog

log = logging.getLogger(__name__)

CODECS = ("vp8", "h264")
SPEEDS: dict[str, tuple[str, str]] = {
    "best": ("-6", "medium"),
    "balanced": ("-6", "veryfast"),
    "fast": ("-8", "superfast"),
    "fastest": ("-16", "ultrafast"),
}
"""`server.encode_speed` -> (libvpx cpu-used, x264 preset). "best" is aiortc's own choice (x264
without a preset is "medium": 80 ms of CPU per 720p frame here, more than the whole pipeline);
measured on the demo at 4 Mbit/s, one thread: VP8 15.0 / 11.7 / 11.2 ms CPU per frame at -6 / -8
/ -16 for 37.3 / 37.0 / 36.7 dB; H.264 79.9 / 14.9 / 9.7 / 5.8 ms at medium / veryfast /
superfast / ultrafast for 38.5 / 38.2 / 38.2 / 37.8 dB."""


@dataclass(frozen=True)
class Rendition:
    """A version of a track a viewer can pick at signaling: bitrate and picture size."""

    name: str
    bitrate_kbps: int
    divisor: int = 1


def renditions(server: ServerConfig) -> dict[str, Rendition]:
    return {
        "full": Rendition("full", server.bitrate_kbps),
        "low": Rendition("low", server.low_bitrate_kbps, server.low_divisor),
    }


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded picture, shared read-only by every sink (nobody may change the packet)."""

    packet: av.Packet
    keyframe: bool
    index: int
    """The camera's frame index, for the latency log."""


class PacketSink(Protocol):
    """A receiver of a shared encoder's output (`SharedEncoder.subscribe`). The camera prepares
    frames only while `camera.viewers` > 0, which the offer handler counts per peer connection;
    a sink that is not behind one (an SFU forwarder) counts itself there. Its loss reports go to
    `SharedEncoder.request_keyframe("pli")`."""

    def deliver(self, frame: EncodedFrame) -> None:
        """Called on the event loop for every frame encoded after it subscribed (the first one a
        keyframe, unless the subscription raced an encode); must not block: the next sink waits."""

    def end(self) -> None:
        """The camera stopped: no more frames will come."""


class KeyframePolicy:
    """When the next frame must be a keyframe. Requests from new subscribers are served on the
    next frame; loss reports (PLI/FIR, an overflowing viewer) at most every `min_gap_s`, the
    later ones being folded into the next allowed keyframe, never dropped."""

    def __init__(self, interval_s: float, min_gap_s: float) -> None:
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self._last = -math.inf
        self._now = False
        self._pending = False

    def request(self, urgent: bool) -> None:
        if urgent:
            self._now = True
        else:
            self._pending = True

    def take(self, now: float) -> bool:
        """Whether the frame encoded at `now` is to be a keyframe (and if so, count it as sent)."""
        since = now - self._last
        due = self._now or since >= self.interval_s or (self._pending and since >= self.min_gap_s)
        if due:
            self.sent(now)
        return due

    def sent(self, now: float) -> None:
        """A keyframe left at `now`, asked for or not (the encoder's first frame, a new size)."""
        self._last = now
        self._now = self._pending = False


class VideoEncoder:
    """A PyAV encoder producing one packet per frame; blocking, one thread at a time.

    Settings follow aiortc's own encoders (vpx.Vp8Encoder, h264.H264Encoder), so pictures
    look as they did with per-viewer encoding, except for the GOP (keyframes are only those the
    policy asks for) and the speed (`SPEEDS`: one encode per camera is a camera's cost).
    Rebuilt when the picture size changes (a control switched the output mode); its first frame
    is then a keyframe."""

    def __init__(self, codec: str, bitrate_kbps: int, speed: str = "fast") -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        if speed not in SPEEDS:
            raise ValueError(f"speed must be one of {tuple(SPEEDS)}, got {speed!r}")
        self.codec, self.speed = codec, speed
        self.bitrate = bitrate_kbps * 1000
        self._context: VideoCodecContext | None = None

    def encode(self, frame: av.VideoFrame, keyframe: bool) -> av.Packet | None:
        """Never writes to `frame`: the camera's frames are read by all encoders at once, so a
        keyframe is forced on a private copy (a memcpy every few seconds)."""
        context = self._context
        if context is None or (context.width, context.height) != (frame.width, frame.height):
            context = self._context = self._open(frame.width, frame.height)
        if keyframe:
            frame = copied(frame)
            frame.pict_type = av.video.frame.PictureType.I
        packets = context.encode(frame)
        if not packets:
            return None
        packet = packets[0] if len(packets) == 1 else av.Packet(b"".join(bytes(p) for p in packets))
        packet.pts, packet.time_base = frame.pts, VIDEO_TIME_BASE
        if len(packets) > 1:
            packet.is_keyframe = any(p.is_keyframe for p in packets)
        return packet

    def _open(self, width: int, height: int) -> VideoCodecContext:
        name = "libvpx" if self.codec == "vp8" else "libx264"
        context = cast(VideoCodecContext, av.CodecContext.create(name, "w"))
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"
        # The publish clock's 90 kHz: pts are the capture cadence, not a fixed frame rate.
        context.time_base = VIDEO_TIME_BASE
        context.framerate = Fraction(30, 1)
        context.bit_rate = self.bitrate
        context.gop_size = 100_000
        if self.codec == "vp8":
            context.qmin, context.qmax = 2, 56
            context.options = {
                "bufsize": str(self.bitrate),
                "cpu-used": SPEEDS[self.speed][0],
                "deadline": "realtime",
                "lag-in-frames": "0",
                "minrate": str(self.bitrate),
                "maxrate": str(self.bitrate),
                "noise-sensitivity": "4",
                "overshoot-pct": "15",
                "partitions": "0",
                "static-thresh": "1",
                "undershoot-pct": "100",
            }
            context.thread_count = number_of_threads(width * height, multiprocessing.cpu_count())
        else:
            context.profile = "Baseline"
            # forced-idr: a requested keyframe must be an IDR (SPS/PPS and a decoder reset),
            # or a viewer joining on it could not start decoding there.
            context.options = {
                "level": "31",
                "tune": "zerolatency",
                "forced-idr": "1",
                "preset": SPEEDS[self.speed][1],
            }
        return context


def copied(frame: av.VideoFrame) -> av.VideoFrame:
    copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
    copy.pts, copy.time_base = frame.pts, frame.time_base
    return copy


def scaled(frame: av.VideoFrame, divisor: int) -> av.VideoFrame:
    """`frame` at 1/divisor of its size (even sides, as 4:2:0 needs), with its timestamps."""
    if divisor == 1:
        return frame
    width, height = max(2, frame.width // divisor // 2 * 2), max(2, frame.height // divisor // 2 * 2)
    small = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
    small.pts, small.time_base = frame.pts, frame.time_base
    return small


class SharedEncoder:
    """Encodes one track of a camera for all its subscribers, only while there is one.

    It takes the newest published frame each time it is free (a slow encode skips frames, it
    never queues them), encodes it in its own thread and hands the packet to every sink."""

    def __init__(
        self,
        camera: CameraRunner,
        kind: str,
        codec: str,
        rendition: Rendition,
        server: ServerConfig,
        latency_log: LatencyLog | None = None,
    ) -> None:
        self.camera = camera
        self.kind = kind
        self.codec = codec
        self.rendition = rendition
        self.latency_log = latency_log
        self.policy = KeyframePolicy(server.keyframe_interval_s, server.keyframe_min_gap_s)
        self.speed = server.encode_speed
        self.frames = 0
        self.keyframes = 0
        self.requests: Counter[str] = Counter()
        """Keyframe requests by reason (subscribe, pli, overflow), before rate limiting."""
        self._sinks: list[PacketSink] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"{self.camera.name}/{self.kind}/{self.codec}/{self.rendition.name}"

    @property
    def sinks(self) -> int:
        return len(self._sinks)

    @property
    def running(self) -> bool:
        return self._task is not None

    def subscribe(self, sink: PacketSink) -> None:
        """On the event loop. The sink's first frame is a keyframe on the next published frame."""
        if sink in self._sinks:
            return
        self._sinks.append(sink)
        self.request_keyframe("subscribe")
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def unsubscribe(self, sink: PacketSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def request_keyframe(self, reason: str) -> None:
        self.requests[reason] += 1
        self.policy.request(urgent=reason == "subscribe")

    def stop(self) -> None:
        self._sinks.clear()
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        encoder = VideoEncoder(self.codec, self.rendition.bitrate_kbps, self.speed)
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"encode-{self.label}")
        log.info("encoder %s started", self.label)
        seq = 0
        try:
            while self._sinks:
                published = await self.camera.wait_newer(seq, timeout=1.0)
                if published is None:
                    if not self.camera.alive:
                        for sink in list(self._sinks):
                            sink.end()
                        self._sinks.clear()
                    continue
                seq = published.seq
                encoded = await self._encode(encoder, executor, published)
                if encoded is not None:
                    for sink in list(self._sinks):
                        sink.deliver(encoded)
        finally:
            self._task = None
            executor.shutdown(wait=False)
            log.info(
                "encoder %s stopped after %d frames, %d keyframes", self.label, self.frames, self.keyframes
            )

    async def _encode(
        self, encoder: VideoEncoder, executor: ThreadPoolExecutor, published: Published
    ) -> EncodedFrame | None:
        frame = published.original if self.kind == "original" else published.enhanced
        if frame is None:  # published before the camera knew of a viewer
            return None
        index = published.result.frame.index & INDEX_MASK
        if self.latency_log is not None:
            self.latency_log.mark(index, {f"sent_{self.kind}": time.monotonic()}, first_only=True)
        keyframe = self.policy.take(time.monotonic())
        divisor = self.rendition.divisor
        packet = await asyncio.get_running_loop().run_in_executor(
            executor, lambda: encoder.encode(scaled(frame, divisor), keyframe)
        )
        if packet is None:
            return None
        self.frames += 1
        if packet.is_keyframe:
            self.keyframes += 1
            if not keyframe:
                self.policy.sent(time.monotonic())
        return EncodedFrame(packet, bool(packet.is_keyframe), index)
