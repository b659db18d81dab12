"""WHEP playback with aiortc as the player, speaking only the standard (an SDP body, Bearer token,
201 + Location, DELETE), against a real server with a demo camera on loopback; and the CORS a
browser player on another origin needs, with the headers a browser sends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streamer.config import (
    AppConfig,
    ConfigError,
    EnhanceConfig,
    OutputConfig,
    ServerConfig,
    SourceConfig,
    validate,
)
from streamer.server import RunningServer, start_server
from streamer.server.latency import read_stamp_from_frame
from streamer.server.signaling import MAX_SDP_CHARS, enable_loopback_fallback, rtc_configuration

module_loop = pytest.mark.asyncio(loop_scope="module")
PENDING_S = 8.0
"""Long enough for ICE and DTLS on a busy 2-core machine, short enough to wait for in a test."""
PLAYER_ORIGIN = "https://player.example.org"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[RunningServer]:
    cfg = AppConfig(
        sources=(SourceConfig(uri="demo", name="door", demo_width=640, demo_height=360, demo_fps=15.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=2),
        server=ServerConfig(
            port=0,
            stamp_frames=True,
            max_peers_per_client=3,
            pending_timeout_s=PENDING_S,
            stun_servers=(),
            cors_origins=(PLAYER_ORIGIN,),
        ),
    )
    srv = await start_server(cfg)
    yield srv
    await srv.stop()


@dataclass
class Player:
    """A WHEP player: one recvonly video transceiver (and an audio one, as real players offer)."""

    pc: RTCPeerConnection
    response: aiohttp.ClientResponse | None = None
    answer: str = ""
    location: str = ""
    frames: list[tuple[int, int, int | None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def pump(self) -> None:
        track = next(t.receiver.track for t in self.pc.getTransceivers() if t.kind == "video")
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames.append((frame.width, frame.height, read_stamp_from_frame(frame)))

    async def wait_frames(self, n: int, timeout: float = 60.0) -> None:
        async def enough() -> None:
            while len(self.frames) < n:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(enough(), timeout)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.pc.close()


async def offer(codec: str | None = None, audio: bool = True) -> Player:
    enable_loopback_fallback()
    pc = RTCPeerConnection(rtc_configuration(()))
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    video = pc.addTransceiver("video", direction="recvonly")
    if codec is not None:
        video.setCodecPreferences(
            [c for c in RTCRtpReceiver.getCapabilities("video").codecs if c.mimeType == codec]
        )
    await pc.setLocalDescription(await pc.createOffer())
    return Player(pc)


def auth(srv: RunningServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.token}"}


async def post(
    srv: RunningServer, path: str, body: str | bytes, content_type: str = "application/sdp"
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{srv.base_url}{path}", data=body, headers={**auth(srv), "Content-Type": content_type}
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


async def play(srv: RunningServer, path: str, player: Player) -> Player:
    status, headers, text = await post(srv, path, player.pc.localDescription.sdp)
    assert status == 201, text
    assert headers["Content-Type"].startswith("application/sdp")
    player.answer, player.location = text, headers["Location"]
    await player.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    player.task = asyncio.ensure_future(player.pump())
    return player


async def request(srv: RunningServer, method: str, location: str, token: bool = True) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{srv.base_url}{location}", headers=auth(srv) if token else {}) as resp,
    ):
        return resp.status


async def until(condition: object, timeout: float) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


@module_loop
async def test_whep_plays_the_enhanced_track_and_delete_ends_the_session(server: RunningServer) -> None:
    player = await play(server, "/whep/door/enhanced", await offer())
    try:
        assert player.location.startswith("/whep/door/enhanced/")
        await player.wait_frames(15)
        assert len(server.state.connected) == 1
        assert await request(server, "PATCH", player.location) == 405
        assert await request(server, "DELETE", player.location, token=False) == 401
        assert await request(server, "DELETE", player.location) == 200
        await until(lambda: not server.state.peers, 10)
        assert await request(server, "DELETE", player.location) == 404
    finally:
        await player.close()
    assert {(w, h) for w, h, _ in player.frames} == {(1280, 720)}
    stamps = [s for _, _, s in player.frames if s is not None]
    assert len(stamps) >= 10 and all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert "m=audio" in player.answer and "a=sendonly" in player.answer
    assert server.state.cameras["door"].viewers == 0


@module_loop
async def test_whep_plays_the_original_track_in_h264_from_the_shared_encoder(server: RunningServer) -> None:
    player = await play(server, "/whep/door/original", await offer("video/H264", audio=False))
    try:
        await player.wait_frames(10)
        encoder = server.state.tracks["door"].encoders[("original", "h264", "full")]
        assert encoder.sinks == 1
    finally:
        await request(server, "DELETE", player.location)
        await player.close()
    assert "H264/90000" in player.answer and "VP8/90000" not in player.answer
    assert {(w, h) for w, h, _ in player.frames} == {(640, 360)}
    await until(lambda: not server.state.peers, 10)


@module_loop
async def test_whep_refuses_what_it_cannot_use_with_the_standard_statuses(server: RunningServer) -> None:
    player = await offer()
    sdp = player.pc.localDescription.sdp
    await player.close()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.base_url}/whep/door/enhanced", data=sdp, headers={"Content-Type": "application/sdp"}
        ) as resp,
    ):
        assert resp.status == 401
    assert (await post(server, "/whep/door/enhanced", sdp, "application/json"))[0] == 415
    assert (await post(server, "/whep/door/enhanced", "v=0\r\nm=video x\r\n"))[0] == 400
    assert (await post(server, "/whep/door/enhanced", '{"sdp": "v=0"}'))[0] == 400
    assert (await post(server, "/whep/door/enhanced", b"v=0\r\n\xff\xfe"))[0] == 400
    listener = RTCPeerConnection(rtc_configuration(()))
    listener.addTransceiver("audio", direction="recvonly")
    await listener.setLocalDescription(await listener.createOffer())
    await listener.close()
    status, _, text = await post(server, "/whep/door/enhanced", listener.localDescription.sdp)
    assert status == 400 and "video" in text
    padded = sdp + "a=x-pad:" + "x" * MAX_SDP_CHARS + "\r\n"
    assert (await post(server, "/whep/door/enhanced", padded))[0] == 413
    assert (await post(server, "/whep/hall/enhanced", sdp))[0] == 404
    assert (await post(server, "/whep/door/thermal", sdp))[0] == 404
    assert await request(server, "DELETE", "/whep/door/enhanced/not-a-session") == 404
    assert not server.state.peers, "no refused offer left a peer connection behind"


@module_loop
async def test_whep_offers_share_the_peer_caps_and_the_pending_hold(server: RunningServer) -> None:
    players = [await offer() for _ in range(4)]
    try:
        answers = [await post(server, "/whep/door/enhanced", p.pc.localDescription.sdp) for p in players]
        assert [status for status, _, _ in answers] == [201, 201, 201, 429]
        assert len(server.state.pending) == 3
        # Nobody completes ICE: the pending hold drops them, and their sessions with them.
        await until(lambda: not server.state.peers, PENDING_S + 10)
        for _, headers, _ in answers[:3]:
            assert await request(server, "DELETE", headers["Location"]) == 404
    finally:
        for p in players:
            await p.close()


async def preflight(
    srv: RunningServer, path: str, method: str, origin: str = PLAYER_ORIGIN
) -> tuple[int, dict[str, str]]:
    """What a browser sends before a cross-origin POST/DELETE/PATCH with a token: no token."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.options(f"{srv.base_url}{path}", headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers)


def methods_in(header: str) -> set[str]:
    return {m.strip() for m in header.split(",")}


async def cross_origin(
    srv: RunningServer, method: str, path: str, body: str = "", token: bool = True
) -> tuple[int, dict[str, str], str]:
    headers = {"Origin": PLAYER_ORIGIN, "Content-Type": "application/sdp", **(auth(srv) if token else {})}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{srv.base_url}{path}", data=body, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


@module_loop
async def test_cors_lets_a_listed_origin_play_with_the_token_still_required(server: RunningServer) -> None:
    status, headers = await preflight(server, "/whep/door/enhanced", "POST")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == PLAYER_ORIGIN
    assert "POST" in methods_in(headers["Access-Control-Allow-Methods"])
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "if-match"} <= allowed
    assert not server.state.peers

    player = await offer()
    sdp = player.pc.localDescription.sdp
    try:
        # Without the token: still 401, but readable by the page, so a player can say why.
        status, headers, _ = await cross_origin(server, "POST", "/whep/door/enhanced", sdp, token=False)
        assert status == 401 and headers["Access-Control-Allow-Origin"] == PLAYER_ORIGIN
        status, headers, answer = await cross_origin(server, "POST", "/whep/door/enhanced", sdp)
        assert status == 201, answer
        assert headers["Access-Control-Allow-Origin"] == PLAYER_ORIGIN
        exposed = {h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")}
        assert {"Location", "Link", "ETag"} <= exposed
        location = headers["Location"]

        status, headers = await preflight(server, location, "PATCH")
        assert status == 204 and {"DELETE", "PATCH"} <= methods_in(headers["Access-Control-Allow-Methods"])
        status, headers, _ = await cross_origin(server, "PATCH", location)
        assert status == 405 and methods_in(headers["Allow"]) == {"DELETE", "OPTIONS"}
        assert headers["Access-Control-Allow-Origin"] == PLAYER_ORIGIN
        assert (await cross_origin(server, "DELETE", location, token=False))[0] == 401
        status, headers, _ = await cross_origin(server, "DELETE", location)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == PLAYER_ORIGIN
    finally:
        await player.close()
    await until(lambda: not server.state.peers, 10)


@module_loop
async def test_cors_refuses_other_origins_and_stays_off_other_routes(server: RunningServer) -> None:
    status, headers = await preflight(server, "/whep/door/enhanced", "POST", "https://evil.example.net")
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    # Not WHEP: no preflight answer without the token, and no CORS header with it.
    assert (await preflight(server, "/api/cameras", "GET"))[0] == 401
    status, headers, _ = await cross_origin(server, "GET", "/api/cameras")
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    # A plain OPTIONS (no preflight) is an ordinary request: token, then what the URL allows.
    assert await request(server, "OPTIONS", "/whep/door/enhanced", token=False) == 401
    async with (
        aiohttp.ClientSession() as http,
        http.options(f"{server.base_url}/whep/door/enhanced", headers=auth(server)) as resp,
    ):
        assert resp.status == 204 and methods_in(resp.headers["Allow"]) == {"POST", "OPTIONS"}


@module_loop
async def test_without_cors_origins_no_cors_header_is_ever_sent() -> None:
    cfg = AppConfig(
        sources=(SourceConfig(uri="demo", name="door", demo_width=160, demo_height=120, demo_fps=5.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        server=ServerConfig(port=0, stun_servers=()),
    )
    srv = await start_server(cfg)
    try:
        status, headers = await preflight(srv, "/whep/door/enhanced", "POST")
        assert status == 401 and not any(h.startswith("Access-Control-") for h in headers)
        status, headers, _ = await cross_origin(srv, "POST", "/whep/door/enhanced", "v=0\r\n")
        assert status == 400 and not any(h.startswith("Access-Control-") for h in headers)
    finally:
        await srv.stop()
    with pytest.raises(ConfigError, match="cors_origins"):
        validate(AppConfig(server=ServerConfig(cors_origins=("player.example.org/whep",))))
