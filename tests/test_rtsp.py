"""RTSP sources against a real GStreamer RTSP server that each test starts on 127.0.0.1.

The server (`devtools/rtsp_server.py`) runs under the system /usr/bin/python3, where Debian's
python3-gi lives; these tests skip when that interpreter cannot load GstRtspServer.
"""

from __future__ import annotations

import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from streamer.config import SourceConfig
from streamer.sources import AvSource, open_source
from streamer.types import Frame

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).resolve().parents[1] / "devtools" / "rtsp_server.py"


def _gst_rtsp_available() -> bool:
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
        "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"
    )
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.rtsp,
    pytest.mark.skipif(
        not _gst_rtsp_available(),
        reason="needs /usr/bin/python3 with gi + GstRtspServer and x264enc (apt: "
        "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{base,good,ugly})",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """One server process; `start()` returns once it printed READY (it is listening)."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}/live"
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("a") as log:  # stderr goes to a file: a full pipe would stall the server
            self.proc = subprocess.Popen(
                [
                    SYSTEM_PYTHON,
                    str(SERVER),
                    "--port",
                    str(self.port),
                    "--path",
                    "/live",
                    "--width",
                    "320",
                    "--height",
                    "240",
                    "--fps",
                    "15",
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready and self.proc.stdout.readline().startswith("READY"):
                return
        self.kill()
        err = self.log_path.read_text().strip()[-500:]
        raise RuntimeError(f"RTSP server did not start on port {self.port}: {err}")

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.proc = None


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[RtspServer]:
    server = RtspServer(_free_port(), tmp_path / "rtsp_server.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _collect(src: AvSource, n: int, within: float, until: Callable[[], bool] = lambda: True) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + within
    while len(frames) < n and time.monotonic() < deadline:
        f = src.read(timeout=0.5)
        if f is not None and until():
            frames.append(f)
    return frames


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_stream_decodes_over_tcp_and_udp(rtsp_server: RtspServer, transport: str) -> None:
    src = open_source(SourceConfig(uri=rtsp_server.url, rtsp_transport=transport, open_timeout_s=5.0))
    assert isinstance(src, AvSource) and src.is_live
    src.start()
    try:
        frames = _collect(src, 12, within=20.0)
    finally:
        src.stop()
    assert len(frames) == 12
    assert frames[0].image.shape == (240, 320, 3)
    assert src.fps == pytest.approx(15, rel=0.2)
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].pts == 0.0, "pts count from the first frame, not from when start() was called"
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    assert frames[-1].image.std() > 5, "a real picture, not a blank frame"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_server_killed_and_restarted_frames_flow_again(rtsp_server: RtspServer, transport: str) -> None:
    cfg = SourceConfig(
        uri=rtsp_server.url,
        rtsp_transport=transport,
        open_timeout_s=1.5,
        reconnect_initial_s=0.2,
        reconnect_max_s=1.0,
    )
    src = open_source(cfg)
    assert isinstance(src, AvSource)
    src.start()
    try:
        before = _collect(src, 5, within=15.0)
        assert len(before) == 5
        rtsp_server.kill()
        # The pipeline keeps going: reads time out with None, never raise, while the camera is gone.
        deadline = time.monotonic() + 15.0
        while src.state != "reconnecting" and time.monotonic() < deadline:
            src.read(timeout=0.2)
        assert src.state == "reconnecting"
        down_at = time.monotonic()
        # Frames decoded before the kill may still be queued; after them nothing comes.
        leftover: list[Frame] = []
        while (frame := src.read(timeout=0.3)) is not None and len(leftover) < 10:
            leftover.append(frame)
        assert frame is None, "frames kept coming while the server was down"
        assert all(f.capture_time <= down_at for f in leftover), "a frame captured after the camera died"
        rtsp_server.start()
        after = _collect(src, 5, within=30.0, until=lambda: src.stats.reconnects >= 1)
    finally:
        src.stop()
    assert len(after) == 5, "frames flow again after the server came back"
    assert src.stats.reconnects >= 1
    assert after[0].pts > before[-1].pts and after[0].index > before[-1].index


def test_slow_consumer_gets_newest_frames_and_drops_are_counted(rtsp_server: RtspServer) -> None:
    src = open_source(SourceConfig(uri=rtsp_server.url, queue_size=1))
    src.start()
    try:
        first = src.read(timeout=10.0)
        time.sleep(1.0)  # 15 fps stream: about 15 frames arrive while we are busy
        second = src.read(timeout=5.0)
    finally:
        src.stop()
    assert first is not None and second is not None
    assert second.index == first.index + 1
    assert src.stats.frames_dropped >= 5
    assert second.pts - first.pts > 0.5, "the frame handed over is the newest one, not the next one"
