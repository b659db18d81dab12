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
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from pathlib import Path
from urllib.parse import quote

from streamer.config import ConfigError, ServerConfig
from streamer.server.encoder import EncodedFrame, SharedEncoder
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
    """The RTSP child process and one feed per camera."""

    def __init__(self, server: ServerConfig, token: str, tracks: dict[str, CameraTracks]) -> None:
        self.server = server
        self.token = token
        self.tracks = tracks
        self.paths = {name: "/" + quote(name, safe="") for name in tracks}
        self.feeds: list[RtspFeed] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._events: asyncio.Task[None] | None = None

    def url(self, camera: str, host: str) -> str:
        """The stream's URL without its password (the token): safe to log or show."""
        return f"rtsp://{USER}@{host}:{self.server.rtsp_out}{self.paths[camera]}"

    async def start(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                SYSTEM_PYTHON,
                str(FEEDER),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ConfigError(f"--rtsp-out needs {SYSTEM_PYTHON} with python3-gi: {exc}") from None
        self._proc = proc
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
        proc.stdin.write(json.dumps(config).encode() + b"\n")
        try:
            ready = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            ready = b""
        if ready.strip() != b"READY":
            await self.stop()
            raise ConfigError(
                f"the RTSP server did not start on {self.server.host}:{self.server.rtsp_out} (port in use, "
                "or missing apt packages gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-bad?)"
            )
        self.feeds = [RtspFeed(i, tracks, proc.stdin) for i, tracks in enumerate(self.tracks.values())]
        self._events = asyncio.ensure_future(self._read_events(proc.stdout))
        host = self.server.host if self.server.host not in ("", "0.0.0.0", "::") else "HOST"
        for name in self.tracks:
            log.info("RTSP out: %s (password: the access token)", self.url(name, host))

    async def _read_events(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            word, _, index = line.decode().partition(" ")
            if word == "OPEN":
                self.feeds[int(index)].reader_opened()
            elif word == "CLOSE":
                self.feeds[int(index)].reader_closed()
        if self._proc is not None:
            log.error(
                "RTSP out: the RTSP server process ended (exit %s); RTSP readers are cut off",
                self._proc.returncode,
            )
        for feed in self.feeds:
            while feed.readers:
                feed.reader_closed()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # end of input: the child's feeding thread ends it
        for ask in (lambda: None, proc.terminate, proc.kill):
            if proc.returncode is not None:
                break
            ask()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                continue
        if self._events is not None:
            await asyncio.gather(self._events, return_exceptions=True)
