"""A small RTSP server for tests and demos, built on GStreamer's GstRtspServer.

Run it with the system interpreter, which is where Debian's python3-gi lives (a venv cannot import
`gi`): `/usr/bin/python3 devtools/rtsp_server.py --port 8554`. It serves live H.264 at
rtsp://HOST:PORT/PATH, from a moving test pattern or, with --file, from a clip decoded and
re-encoded in a loop. It prints one line `READY <url>` on stdout once it listens, so a parent
process can wait for that instead of sleeping; it exits on SIGTERM/SIGINT.

Apt packages: gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{base,good,ugly}.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(args: argparse.Namespace) -> str:
    """The GStreamer pipeline each client is served from; zerolatency keeps x264 from buffering."""
    caps = f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1"
    if args.file:
        src = (
            f'multifilesrc location="{Path(args.file).resolve()}" loop=true ! decodebin ! videoconvert '
            f"! videoscale ! videorate ! {caps}"
        )
    else:
        src = f"videotestsrc is-live=true pattern={args.pattern} ! {caps}"
    enc = (
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} bitrate={args.kbps} "
        "! video/x-h264,profile=baseline"
    )
    return f"( {src} ! videoconvert ! {enc} ! rtph264pay name=pay0 pt=96 config-interval=1 )"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/live", help="mount point, e.g. /live")
    ap.add_argument("--file", default="", help="serve this clip (looped) instead of a test pattern")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--kbps", type=int, default=800)
    ap.add_argument("--pattern", default="ball", help="videotestsrc pattern")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.host}:{args.port} (port in use?)", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY rtsp://{args.host}:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
