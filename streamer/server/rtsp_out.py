"""`--rtsp-out PORT`: each camera's enhanced stream as RTSP H.264, for a VMS, an NVR or go2rtc to
record like any camera, at rtsp://facestream:TOKEN@HOST:PORT/CAMERA.

The RTSP server is GStreamer's gst-rtsp-server in a child process (rtsp_feeder.py, run by the
system interpreter that has python3-gi). Nothing is encoded for it: `RtspFeed`, a `PacketSink`
of the camera's shared H.264 encoder (the one WebRTC viewers of H.264 use), writes each packet
to the child's stdin. It subscribes only while the child reports a reader on that camera, counting
itself as a viewer then (the camera prepares frames only for viewers), and asks for a keyframe
for every reader that arrives, so a reader connecting mid-stream starts decoding at once.

A feed never waits for the child: past `MAX_BUFFERED` bytes not yet taken by the pipe, frames
are dropped up to the next keyframe (asked for), as a slow WebRTC viewer's are.

The child can die (a GStreamer bug, the OOM killer, an operator's kill) without taking live video
with it: its readers are cut off and released, and the child is started again after a backoff
(`RESTART_BACKOFF_S`, starting over once a child has run `STABLE_S`), for as long as the server
runs. Each restart counts in `facestream_rtsp_out_restarts_total`; the log says so at most once a
minute per kind of line (a crash loop must not flood it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from pathlib import Path
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter

from streamer.config import ConfigError, ServerConfig
from streamer.server.encoder import EncodedFrame, SharedEncoder
from streamer.server.log_throttle import ThrottledLog
from streamer.server.tracks import CameraTracks

log = logging.getLogger(__name__)

HEADER = struct.Struct("<HBI")
"""Before each frame on the child's stdin: camera index, flags (KEYFRAME), size."""
KEYFRAME = 1
USER = "facestream"
SYSTEM_PYTHON = "/usr/bin/python3"
FEEDER = Path(__file__).with_name("rtsp_feeder.py")
START_TIMEOUT_S = 20.0
MAX_BUFFERED = 4_000_000
"""About two seconds of 720p at the default bitrate waiting for the pipe."""
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before each successive restart of a child that keeps dying (then 30 s each time)."""
STABLE_S = 60.0
"""A child that ran this long before dying was healthy: the next restart waits the shortest."""


class RtspFeed:
    """One camera's packets to the RTSP child, while it has readers."""

    def __init__(self, index: int, tracks: CameraTracks, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.camera = tracks.camera
        self.encoder: SharedEncoder = tracks.encoder("enhanced", "h264", "full")
        self.writer = writer
        self.readers = 0
        self.dropped = 0
        self._need_key = True

    def attach(self, writer: asyncio.StreamWriter) -> None:
        """A restarted child's stdin; its first frame will be a keyframe."""
        self.writer = writer
        self._need_key = True

    def reader_opened(self) -> None:
        self.readers += 1
        if self.readers == 1:
            self.camera.viewers += 1
            self._need_key = True
            self.encoder.subscribe(self)  # its first frame is a keyframe
        else:
            self.encoder.request_keyframe("subscribe")

    def reader_closed(self) -> None:
        self.readers = max(0, self.readers - 1)
        if self.readers == 0:
            self.encoder.unsubscribe(self)
            self.camera.viewers = max(0, self.camera.viewers - 1)

    def deliver(self, frame: EncodedFrame) -> None:
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            if not self._need_key:
                self.encoder.request_keyframe("overflow")
            self._need_key = True
            self.dropped += 1
            return
        if self._need_key and not frame.keyframe:
            return
        self._need_key = False
        data = bytes(frame.packet)
        self.writer.write(HEADER.pack(self.index, KEYFRAME if frame.keyframe else 0, len(data)) + data)

    def end(self) -> None:
        """The camera stopped; its encoder has dropped every sink."""
        self.readers = 0


class RtspOut:
    """The RTSP child process, kept running, and one feed per camera."""

    def __init__(
        self,
        server: ServerConfig,
        token: str,
        tracks: dict[str, CameraTracks],
        registry: CollectorRegistry,
    ) -> None:
        self.server = server
        self.token = token
        self.tracks = tracks
        self.paths = {name: "/" + quote(name, safe="") for name in tracks}
        self.feeds: list[RtspFeed] = []
        self.restarts = Counter(
            "facestream_rtsp_out_restarts",
            "Times the RTSP server child process was started again after it died",
            registry=registry,
        )
        self.child_log = ThrottledLog(log)
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None between a death and its restart)."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def url(self, camera: str, host: str) -> str:
        """The stream's URL without its password (the token): safe to log or show."""
        return f"rtsp://{USER}@{host}:{self.server.rtsp_out}{self.paths[camera]}"

    async def start(self) -> None:
        """Start the child; a first start that fails is a configuration error (port, packages)."""
        proc = await self._spawn()
        assert proc.stdin is not None
        self.feeds = [RtspFeed(i, tracks, proc.stdin) for i, tracks in enumerate(self.tracks.values())]
        self._supervisor = asyncio.ensure_future(self._supervise())
        host = self.server.host if self.server.host not in ("", "0.0.0.0", "::") else "HOST"
        for name in self.tracks:
            log.info("RTSP out: %s (password: the access token)", self.url(name, host))

    async def _spawn(self) -> asyncio.subprocess.Process:
        """A child that said READY, or ConfigError (and no child left behind)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                SYSTEM_PYTHON,
                str(FEEDER),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ConfigError(f"--rtsp-out needs {SYSTEM_PYTHON} with python3-gi: {exc}") from None
        assert proc.stdin is not None and proc.stdout is not None
        config = {
            "host": self.server.host,
            "port": self.server.rtsp_out,
            "user": USER,
            "password": self.token,
            "header": HEADER.format,
            "keyframe": KEYFRAME,
            "mounts": list(self.paths.values()),
        }
        ready = b""
        try:
            proc.stdin.write(json.dumps(config).encode() + b"\n")
            with contextlib.suppress(TimeoutError):
                ready = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        finally:
            if ready.strip() != b"READY":  # also when cancelled while starting
                await _end(proc)
        if ready.strip() != b"READY":
            raise ConfigError(
                f"the RTSP server did not start on {self.server.host}:{self.server.rtsp_out} (port in use, "
                "or missing apt packages gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-bad?)"
            )
        self._proc, self._started_at = proc, time.monotonic()
        return proc

    async def _supervise(self) -> None:
        """Relay the child's events; when it dies, release its readers and start another."""
        failures = 0
        while (proc := self._proc) is not None:
            assert proc.stdout is not None
            await self._read_events(proc.stdout)
            await proc.wait()
            self._cut_readers()
            if self._stopping:
                return
            self._proc = None
            lived = time.monotonic() - self._started_at
            if lived >= STABLE_S:
                failures = 0
            while not self._stopping:
                delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
                failures += 1
                self.child_log.error(
                    "RTSP out: the RTSP server process ended (exit %s after %.0f s); its readers are "
                    "cut off; starting it again in %.1f s",
                    proc.returncode,
                    lived,
                    delay,
                )
                await asyncio.sleep(delay)
                try:
                    new = await self._spawn()
                except ConfigError as exc:
                    self.child_log.error("RTSP out: restart failed: %s", exc)
                    continue
                if self._stopping:  # stop() came while it started: stop() ends it
                    return
                assert new.stdin is not None
                for feed in self.feeds:
                    feed.attach(new.stdin)
                self.restarts.inc()
                self.child_log.warning("RTSP out: the RTSP server is back (a restart, counted in /metrics)")
                break

    async def _read_events(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            word, _, index = line.decode().partition(" ")
            if word == "OPEN":
                self.feeds[int(index)].reader_opened()
            elif word == "CLOSE":
                self.feeds[int(index)].reader_closed()

    def _cut_readers(self) -> None:
        for feed in self.feeds:
            while feed.readers:
                feed.reader_closed()

    async def stop(self) -> None:
        self._stopping = True
        if self._proc is not None:
            await _end(self._proc)  # its output ends: the supervisor returns
        task, self._supervisor = self._supervisor, None
        if task is not None:
            # Or it was waiting to restart, or starting a child (which _spawn ends if not ready).
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        proc, self._proc = self._proc, None
        if proc is not None:  # one that became ready just as we stopped
            await _end(proc)
        self._cut_readers()


async def _end(proc: asyncio.subprocess.Process) -> None:
    """End of input first (the child's feeding thread then quits), then SIGTERM, then SIGKILL."""
    if proc.stdin is not None:
        proc.stdin.close()
    for ask in (lambda: None, proc.terminate, proc.kill):
        if proc.returncode is not None:
            break
        ask()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            continue
