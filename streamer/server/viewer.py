"""A receiving WebRTC peer in Python: what the tests and the latency benchmark watch with.

It does what the dashboard page does (recvonly transceivers, full ICE gathering, one POST to the
offer route) and hands every decoded frame to a callback with the time it came out of the
decoder, so measurements are taken on frames a viewer really received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence

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
    def __init__(self, pc: RTCPeerConnection, tasks: list[asyncio.Task[None]], codec: str) -> None:
        self.pc = pc
        self.codec = codec
        self._tasks = tasks

    async def bytes_received(self) -> int:
        stats = await self.pc.getStats()
        return sum(int(getattr(s, "bytesReceived", 0)) for s in stats.values() if s.type == "inbound-rtp")

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
) -> Viewer:
    """Connect to `camera` and start delivering frames to `on_frame(kind, frame, t_decoded)`."""
    enable_loopback_fallback()
    pc = RTCPeerConnection(rtc_configuration(()))
    transceivers = [pc.addTransceiver("video", direction="recvonly") for _ in tracks]
    await pc.setLocalDescription(await pc.createOffer())
    body: dict[str, object] = {"sdp": pc.localDescription.sdp, "type": "offer", "tracks": list(tracks)}
    if codec is not None:
        body["codec"] = codec
    url = f"{base_url}/api/cameras/{camera}/offer"
    try:
        async with aiohttp.ClientSession() as session, session.post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, ssl=ssl_context or True
        ) as resp:
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

    tasks = [asyncio.ensure_future(pump(kind, t)) for kind, t in zip(tracks, transceivers, strict=True)]
    return Viewer(pc, tasks, answer.get("codec", codec or ""))
