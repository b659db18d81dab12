"""A receiving WebRTC peer in Python: what the tests and the latency benchmark watch with.

It does what the dashboard page does (recvonly transceivers, full ICE gathering, one POST to the
offer route) and hands every decoded frame to a callback with the time it came out of the
decoder, so measurements are taken on frames a viewer really received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streamer.server.signaling import enable_loopback_fallback, rtc_configuration

log = logging.getLogger(__name__)

FrameCallback = Callable[[str, av.VideoFrame, float], None]


class ViewerError(RuntimeError):
    """The server refused the offer (the message carries its HTTP status and text)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"offer refused with HTTP {status}: {text}")
        self.status = status


class Viewer:
    def __init__(
        self,
        pc: RTCPeerConnection,
        tasks: list[asyncio.Task[None]],
        codec: str,
        connected: asyncio.Future[float],
        peer: str | None = None,
    ) -> None:
        self.pc = pc
        self.codec = codec
        self.peer = peer
        """The id the offer route gave this connection, for POST /api/cameras/{name}/watch."""
        self._tasks = tasks
        self._connected = connected

    @property
    def connected_at(self) -> float | None:
        """time.monotonic() when ICE and DTLS were up: where a viewer's wait for its first
        picture starts (None before)."""
        return self._connected.result() if self._connected.done() else None

    async def wait_connected(self, timeout: float) -> float:
        return await asyncio.wait_for(asyncio.shield(self._connected), timeout)

    async def bytes_received(self) -> int:
        """Bytes received on the connection's transport (aiortc's inbound-rtp stats carry no byte
        count); with one video track that is the video bitrate plus a little RTCP."""
        stats = await self.pc.getStats()
        return sum(int(getattr(s, "bytesReceived", 0)) for s in stats.values() if s.type == "transport")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


async def connect_viewer(
    base_url: str,
    token: str,
    camera: str,
    on_frame: FrameCallback,
    tracks: Sequence[str] = ("enhanced", "original"),
    codec: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    pump_delay: float = 0.0,
    rendition: str | None = None,
) -> Viewer:
    """Connect to `camera` and start delivering frames to `on_frame(kind, frame, t_decoded)`.
    `pump_delay` > 0 makes a deliberately slow viewer that sleeps after every frame."""
    enable_loopback_fallback()
    pc = RTCPeerConnection(rtc_configuration(()))
    connected: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected" and not connected.done():
            connected.set_result(time.monotonic())

    transceivers = [pc.addTransceiver("video", direction="recvonly") for _ in tracks]
    await pc.setLocalDescription(await pc.createOffer())
    body: dict[str, object] = {"sdp": pc.localDescription.sdp, "type": "offer", "tracks": list(tracks)}
    if codec is not None:
        body["codec"] = codec
    if rendition is not None:
        body["rendition"] = rendition
    url = f"{base_url}/api/cameras/{camera}/offer"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url, json=body, headers={"Authorization": f"Bearer {token}"}, ssl=ssl_context or True
            ) as resp,
        ):
            if resp.status != 200:
                raise ViewerError(resp.status, await resp.text())
            answer = await resp.json()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    except BaseException:
        await pc.close()
        raise

    async def pump(kind: str, transceiver: object) -> None:
        track = transceiver.receiver.track  # type: ignore[attr-defined]
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                on_frame(kind, frame, time.monotonic())
                if pump_delay > 0:
                    await asyncio.sleep(pump_delay)

    tasks = [asyncio.ensure_future(pump(kind, t)) for kind, t in zip(tracks, transceivers, strict=True)]
    return Viewer(pc, tasks, answer.get("codec", codec or ""), connected, answer.get("peer"))


async def _watch(
    url: str,
    cameras: Sequence[str],
    seconds: float,
    slow_s: float = 0.0,
    codec: str | None = None,
    tracks: Sequence[str] = ("enhanced", "original"),
    decode_times: bool = False,
    rendition: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Watch `cameras` for `seconds`; per camera and track: frames, stamps and arrival gaps, and
    with `decode_times` when the connection came up, when the first frame and each stamped frame
    came out of the decoder, in time.monotonic() (CLOCK_MONOTONIC is system-wide on Linux, so
    the server process can compare)."""
    from urllib.parse import parse_qs, urlsplit

    from streamer.server.latency import read_stamp_from_frame

    parts = urlsplit(url)
    token = parse_qs(parts.query).get("token", [""])[0]
    base = f"{parts.scheme}://{parts.netloc}"
    arrivals: dict[str, list[float]] = {}
    stamps: dict[str, list[int]] = {}
    decoded: dict[str, dict[int, float]] = {}
    started = time.monotonic()

    def on_frame(key: str) -> FrameCallback:
        def record(kind: str, frame: av.VideoFrame, t: float) -> None:
            arrivals.setdefault(f"{key}/{kind}", []).append(t - started)
            stamp = read_stamp_from_frame(frame)
            if stamp is not None:
                stamps.setdefault(f"{key}/{kind}", []).append(stamp)
                decoded.setdefault(f"{key}/{kind}", {}).setdefault(stamp, t)

        return record

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    viewers = [
        await connect_viewer(
            base,
            token,
            cam,
            on_frame(cam),
            tracks=tracks,
            codec=codec,
            pump_delay=slow_s,
            rendition=rendition,
        )
        for cam in cameras
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds if seconds > 0 else None)
    watched = time.monotonic() - started
    received = {cam: await v.bytes_received() for cam, v in zip(cameras, viewers, strict=True)}
    connected_at = {cam: v.connected_at for cam, v in zip(cameras, viewers, strict=True)}
    for v in viewers:
        await v.close()
    report: dict[str, dict[str, Any]] = {}
    for key, times in arrivals.items():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        read = stamps.get(key, [])
        report[key] = {
            "frames": len(times),
            "first_s": times[0],
            "max_gap_s": max(gaps, default=0.0),
            "stamps": len(read),
            "stamp_first": read[0] if read else None,
            "stamp_last": read[-1] if read else None,
            "camera_kbps": received[key.split("/")[0]] * 8 / 1000 / watched,
        }
        if decode_times:
            report[key]["decoded_at"] = decoded.get(key, {})
            report[key]["connected_at"] = connected_at[key.split("/")[0]]
            report[key]["first_at"] = started + times[0]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m devtools.viewer URL --camera NAME [--seconds S] [--slow S]`: watch, then
    print one JSON line with frames, frame-number stamps and the longest arrival gap per track."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m devtools.viewer", description=main.__doc__)
    p.add_argument("url", help="the URL the server printed (with ?token=)")
    p.add_argument("--camera", action="append", required=True)
    p.add_argument(
        "--track",
        action="append",
        choices=["enhanced", "original"],
        help="which tracks to receive (default both)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="how long to watch; 0: until SIGTERM")
    p.add_argument("--slow", type=float, default=0.0, help="sleep this long after each frame (a slow viewer)")
    p.add_argument("--codec", choices=["vp8", "h264"])
    p.add_argument("--rendition", help="which rendition to ask for (the server lists them; default full)")
    p.add_argument("--decode-times", action="store_true", help="include when each stamped frame was decoded")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    tracks = tuple(args.track or ("enhanced", "original"))
    report = asyncio.run(
        _watch(
            args.url,
            args.camera,
            args.seconds,
            args.slow,
            args.codec,
            tracks,
            args.decode_times,
            args.rendition,
        )
    )
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
