"""The RTSP server behind `--rtsp-out`: GStreamer's gst-rtsp-server, serving H.264 it is handed.

Run by rtsp_out.py with the system interpreter, where Debian's python3-gi lives (a venv cannot
import `gi`), so it imports nothing but gi and the standard library. It never encodes: the
server process writes each camera's shared-encoder packets (Annex-B H.264, one access unit each,
SPS/PPS before every IDR) to its stdin, and every reader's media pushes them through appsrc into
rtph264pay.

stdin: one JSON line {"host", "port", "user", "password", "mounts": [path, ...], "header":
struct format, "keyframe": flag bit}, then frames, each a header (mount index, flags, size) and
that many bytes. stdout, one line per event:
`READY`, `OPEN <index>` when a reader's media is built (the server then sends a keyframe and
starts feeding that camera), `CLOSE <index>` when it is torn down. Each reader gets its own
media (not shared), so each one starts on a keyframe of its own asking. Readers authenticate
with RTSP basic auth (the server's token as password).

Apt packages: gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{base,good,bad}.
"""

from __future__ import annotations

import json
import signal
import struct
import sys
import threading
from typing import Any, BinaryIO

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ROLE = "viewer"
LAUNCH = (
    "( appsrc name=src is-live=true format=time do-timestamp=true leaky-type=downstream "
    "max-bytes=4000000 caps=video/x-h264,stream-format=byte-stream,alignment=au "
    "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
"""do-timestamp: buffers are stamped on arrival with the media's own clock, which starts at each
reader's connection; leaky: a stalled reader drops its oldest frames instead of growing."""


def say(line: str) -> None:
    print(line, flush=True)


class Mount:
    """One camera's path: the appsrc of every reader's media, each fed from its first keyframe."""

    def __init__(self, index: int) -> None:
        self.index = index
        self._sources: dict[Any, bool] = {}
        """appsrc -> has had its keyframe"""
        self._lock = threading.Lock()

    def configure(self, factory: Any, media: Any) -> None:
        source = media.get_element().get_child_by_name("src")
        with self._lock:
            self._sources[source] = False
        media.connect("unprepared", self.unprepared, source)
        say(f"OPEN {self.index}")

    def unprepared(self, media: Any, source: Any) -> None:
        with self._lock:
            self._sources.pop(source, None)
        say(f"CLOSE {self.index}")

    def push(self, data: bytes, keyframe: bool) -> None:
        with self._lock:
            for source, started in list(self._sources.items()):
                if started or keyframe:
                    self._sources[source] = True
                    source.emit("push-buffer", Gst.Buffer.new_wrapped(data))


def feed(stream: BinaryIO, config: dict[str, Any], mounts: list[Mount], loop: Any) -> None:
    """Frames from stdin to the mounts until the server process closes it (then exit)."""
    header = struct.Struct(config["header"])
    while True:
        head = stream.read(header.size)
        if len(head) < header.size:
            break
        index, flags, size = header.unpack(head)
        data = stream.read(size)
        if len(data) < size:
            break
        if index < len(mounts):
            mounts[index].push(data, bool(flags & config["keyframe"]))
    GLib.idle_add(loop.quit)


def build(config: dict[str, Any]) -> tuple[Any, list[Mount]]:
    server = GstRtspServer.RTSPServer()
    server.set_address(config["host"])
    server.set_service(str(config["port"]))
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", ROLE)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(config["user"], config["password"]), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role(ROLE)
    permissions.add_permission_for_role(ROLE, "media.factory.access", True)
    permissions.add_permission_for_role(ROLE, "media.factory.construct", True)
    mounts = []
    for index, path in enumerate(config["mounts"]):
        mount = Mount(index)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(LAUNCH)
        factory.set_shared(False)
        factory.set_permissions(permissions)
        factory.connect("media-configure", mount.configure)
        server.get_mount_points().add_factory(path, factory)
        mounts.append(mount)
    return server, mounts


def main() -> int:
    Gst.init(None)
    stream = sys.stdin.buffer
    config = json.loads(stream.readline())
    server, mounts = build(config)
    if server.attach(None) == 0:
        print(f"rtsp_feeder: cannot listen on {config['host']}:{config['port']}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    threading.Thread(target=feed, args=(stream, config, mounts, loop), daemon=True).start()
    say("READY")
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
