"""The aiohttp application: dashboard, signaling, controls, metadata WebSocket, health, metrics.

Routes (all but /healthz need the token, see auth.py):
    GET  /                                  dashboard page
    GET  /static/{file}                     its CSS/JS
    GET  /api/cameras                       cameras, their sizes, controls, backend, status
    POST /api/cameras/{name}/offer          {sdp, type, tracks?, codec?} -> {sdp, type, tracks}
    POST /api/cameras/{name}/controls       {scale?, mode?, detect_interval?, upscale?} -> controls
    GET  /api/ws                            per-frame metadata and face thumbnails (JSON messages)
    GET  /metrics                           Prometheus text format
    GET  /healthz                           {"status": "ok" | "degraded"}
    /faces, /api/faces...                   the face timeline (timeline_api.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import WSCloseCode, WSMsgType, web
from aiortc import RTCPeerConnection, RTCSessionDescription

from streamer.config import AppConfig, ConfigError, live_settings
from streamer.server.auth import security_headers, token_middleware
from streamer.server.camera import CameraRunner, ProcessorFactory
from streamer.server.latency import LatencyLog
from streamer.server.metrics import Metrics
from streamer.server.signaling import (
    OfferError,
    PeerCaps,
    PeerLimitError,
    parse_offer,
    prefer_codec,
    rtc_configuration,
)
from streamer.server.timeline_api import add_timeline
from streamer.server.tracks import KINDS, CameraTracks

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_BODY_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 30.0
WS_MAX_HZ = 15.0
MAX_SOCKETS = 64
"""Metadata WebSockets are cheap but not free (a sender task and JSON per frame each)."""


class ServerState:
    """Everything the handlers share; one per app."""

    def __init__(
        self,
        cfg: AppConfig,
        token: str,
        processor_factory: ProcessorFactory | None,
        latency_log: LatencyLog | None,
    ) -> None:
        self.cfg = cfg
        self.token = token
        self.metrics = Metrics()
        self.caps = PeerCaps(cfg.server.max_peers_total, cfg.server.max_peers_per_client)
        self.latency_log = latency_log
        self.cameras: dict[str, CameraRunner] = {}
        self.tracks: dict[str, CameraTracks] = {}
        self.peers: dict[RTCPeerConnection, tuple[str, str]] = {}
        self.ws_event = asyncio.Event()
        self.sockets: set[web.WebSocketResponse] = set()
        for source in cfg.sources:
            runner = CameraRunner(cfg, source, self.metrics, processor_factory, latency_log)
            self.cameras[runner.name] = runner
            self.tracks[runner.name] = CameraTracks(runner, latency_log)
            self.metrics.add_camera(runner.name)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for runner in self.cameras.values():
            runner.add_listener(self._wake_ws)
            runner.start(loop)

    def _wake_ws(self) -> None:
        event, self.ws_event = self.ws_event, asyncio.Event()
        event.set()

    async def close_peer(self, pc: RTCPeerConnection) -> None:
        owner = self.peers.pop(pc, None)
        if owner is not None:
            client, camera = owner
            self.caps.release(client)
            runner = self.cameras[camera]
            runner.viewers = max(0, runner.viewers - 1)
            self.metrics.viewers.labels(camera).set(runner.viewers)
            self.metrics.peers.set(len(self.peers))
        await pc.close()

    async def stop(self) -> None:
        """Open dashboards would otherwise keep the server waiting for their WebSockets."""
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in list(self.sockets)),
            return_exceptions=True,
        )
        await asyncio.gather(*(self.close_peer(pc) for pc in list(self.peers)), return_exceptions=True)
        for tracks in self.tracks.values():
            tracks.stop()
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in self.cameras.values()))


STATE = web.AppKey("state", ServerState)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


def _camera(request: web.Request) -> CameraRunner:
    name = request.match_info["name"]
    runner = _state(request).cameras.get(name)
    if runner is None:
        raise web.HTTPNotFound(text=f"404: no camera named {name!r}")
    return runner


async def _json_body(request: web.Request) -> Any:
    """The parsed body; oversized -> 413 (aiohttp's client_max_size), not JSON -> 400."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="400: body must be JSON") from None


# -- pages -------------------------------------------------------------------------------------
async def index(request: web.Request) -> web.Response:
    """The page, with the token put into its asset URLs (the static routes need it too)."""
    html = (STATIC_DIR / "index.html").read_text()
    html = html.replace("{{token}}", quote(_state(request).token, safe=""))
    return web.Response(text=html, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    state = _state(request)
    ok = all(r.alive and r.error is None for r in state.cameras.values())
    return web.json_response({"status": "ok" if ok else "degraded"}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    state = _state(request)
    body = state.metrics.render()
    return web.Response(body=body, headers={"Content-Type": state.metrics.content_type})


def _camera_info(runner: CameraRunner) -> dict[str, Any]:
    latest = runner.latest
    processor = runner.processor
    info: dict[str, Any] = {
        "name": runner.name,
        "status": "error" if runner.error else ("running" if latest is not None else "starting"),
        "error": runner.error,
        "backend": processor.backend_name if processor is not None else "",
        "controls": processor.controls if processor is not None else {},
        "fps": round(runner.fps, 2),
        "viewers": runner.viewers,
    }
    if latest is not None:
        h, w = latest.result.frame.image.shape[:2]
        oh, ow = latest.result.output.shape[:2]
        info["frame_size"], info["output_size"] = [w, h], [ow, oh]
    return info


async def cameras(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response(
        {
            "cameras": [_camera_info(r) for r in state.cameras.values()],
            "codec": state.cfg.server.codec,
            "bitrate_kbps": state.cfg.server.bitrate_kbps,
            "settings": {name: s.describe() for name, s in live_settings().items()},
        }
    )


# -- controls ----------------------------------------------------------------------------------
async def controls(request: web.Request) -> web.Response:
    """Live settings, validated by the config schema (types, ranges, choices) as at start."""
    runner = _camera(request)
    body = await _json_body(request)
    valid = sorted(live_settings())
    if not isinstance(body, dict) or not body:
        raise web.HTTPBadRequest(text=f"400: send a JSON object with any of {valid}")
    processor = runner.processor
    if processor is None:
        raise web.HTTPServiceUnavailable(text="503: camera is still starting; retry in a moment")
    try:
        pending = processor.apply(body)
    except ConfigError as exc:
        raise web.HTTPBadRequest(text=f"400: {exc}") from None
    log.info("camera %s: controls %s", runner.name, {k: pending.get(k) for k in body if k in pending})
    return web.json_response({"camera": runner.name, "applied": body, "controls": pending})


# -- signaling ---------------------------------------------------------------------------------
async def offer(request: web.Request) -> web.Response:
    state = _state(request)
    runner = _camera(request)
    body = await _json_body(request)
    try:
        parsed = parse_offer(body, state.cfg.server.codec, KINDS)
    except OfferError as exc:
        raise web.HTTPBadRequest(text=f"400: {exc}") from None
    client = request.remote or "unknown"
    try:
        state.caps.acquire(client)
    except PeerLimitError as exc:
        state.metrics.rejected.labels("per_client" if exc.status == 429 else "total").inc()
        raise _limit_response(exc) from None

    pc = RTCPeerConnection(rtc_configuration(state.cfg.server.stun_servers))
    state.peers[pc] = (client, runner.name)
    runner.viewers += 1
    state.metrics.viewers.labels(runner.name).set(runner.viewers)
    state.metrics.peers.set(len(state.peers))

    # Whatever happens next (bad SDP, a client that never completes ICE, a dropped request),
    # the slot comes back within CONNECT_TIMEOUT_S.
    asyncio.get_running_loop().call_later(CONNECT_TIMEOUT_S, _drop_if_unconnected, state, pc)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await state.close_peer(pc)

    try:
        # Our transceivers exist before the offer is applied: aiortc negotiates codecs inside
        # setRemoteDescription, and binds the offer's video m-lines to them in order.
        ours = []
        for which in parsed.tracks:
            transceiver = pc.addTransceiver(state.tracks[runner.name].subscribe(which), direction="sendonly")
            prefer_codec(transceiver, parsed.codec)
            ours.append(transceiver)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=parsed.sdp, type="offer"))
        bound = sum(t.mid is not None for t in ours)
        if bound < len(ours):
            raise OfferError(
                f"the offer has {bound} video m-line(s) for {len(ours)} track(s); "
                "add one recvonly video transceiver per track"
            )
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except Exception as exc:  # any malformed SDP must end as a 400, never as a crashed handler
        await state.close_peer(pc)
        reason = str(exc) or type(exc).__name__
        log.info("offer for %s from %s refused: %s", runner.name, client, reason)
        raise web.HTTPBadRequest(text=f"400: cannot use this offer: {reason}") from None

    log.info("viewer %s connected to %s (%s, %s)", client, runner.name, parsed.codec, ",".join(parsed.tracks))
    return web.json_response(
        {
            "sdp": pc.localDescription.sdp,
            "type": pc.localDescription.type,
            "tracks": list(parsed.tracks),
            "codec": parsed.codec,
        }
    )


def _limit_response(exc: PeerLimitError) -> web.HTTPException:
    cls = web.HTTPTooManyRequests if exc.status == 429 else web.HTTPServiceUnavailable
    return cls(text=f"{exc.status}: {exc}")


def _drop_if_unconnected(state: ServerState, pc: RTCPeerConnection) -> None:
    """A peer that never completes ICE would hold a slot forever; free it."""
    if pc in state.peers and pc.connectionState != "connected":
        log.info("closing a peer that did not connect within %.0f s", CONNECT_TIMEOUT_S)
        asyncio.ensure_future(state.close_peer(pc))


# -- metadata WebSocket ------------------------------------------------------------------------
async def websocket(request: web.Request) -> web.WebSocketResponse:
    state = _state(request)
    if len(state.sockets) >= MAX_SOCKETS:
        raise web.HTTPServiceUnavailable(text=f"503: {MAX_SOCKETS} dashboards are open already; close one")
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    runners = list(state.cameras.values())
    for r in runners:
        r.ws_clients += 1
    state.sockets.add(ws)
    sender = asyncio.ensure_future(_ws_sender(ws, state, runners))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        sender.cancel()
        state.sockets.discard(ws)
        for r in runners:
            r.ws_clients -= 1
    return ws


async def _ws_sender(ws: web.WebSocketResponse, state: ServerState, runners: Iterable[CameraRunner]) -> None:
    """Each client has its own sender, so a slow browser tab only delays itself; it always gets
    the newest message, never a backlog. A tab that goes away mid-send just ends it."""
    with contextlib.suppress(ConnectionResetError):
        await _ws_send_loop(ws, state, list(runners))


async def _ws_send_loop(ws: web.WebSocketResponse, state: ServerState, runners: list[CameraRunner]) -> None:
    await ws.send_json(
        {
            "type": "hello",
            "cameras": [_camera_info(r) for r in runners],
            "codec": state.cfg.server.codec,
            "bitrate_kbps": state.cfg.server.bitrate_kbps,
            "settings": {name: s.describe() for name, s in live_settings().items()},
        }
    )
    sent_seq = {r.name: 0 for r in runners}
    sent_thumbs = {r.name: 0 for r in runners}
    last_sent = {r.name: 0.0 for r in runners}
    while not ws.closed:
        event = state.ws_event
        try:
            await asyncio.wait_for(event.wait(), timeout=1.0)
        except TimeoutError:
            pass
        now = time.monotonic()
        for r in runners:
            latest = r.latest
            if (
                latest is not None
                and latest.seq > sent_seq[r.name]
                and now - last_sent[r.name] >= 1 / WS_MAX_HZ
            ):
                await ws.send_str(latest.meta_json)
                sent_seq[r.name], last_sent[r.name] = latest.seq, now
            thumbs_seq, thumbs_json = r.thumbs
            if thumbs_seq > sent_thumbs[r.name]:
                await ws.send_str(thumbs_json)
                sent_thumbs[r.name] = thumbs_seq


# -- app ---------------------------------------------------------------------------------------
def create_app(
    cfg: AppConfig,
    token: str,
    processor_factory: ProcessorFactory | None = None,
    latency_log: LatencyLog | None = None,
) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[security_headers, token_middleware(token)]
    )
    state = ServerState(cfg, token, processor_factory, latency_log)
    app[STATE] = state

    async def on_startup(app: web.Application) -> None:
        state.start()

    async def on_shutdown(app: web.Application) -> None:
        await state.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/cameras", cameras)
    app.router.add_post("/api/cameras/{name}/offer", offer)
    app.router.add_post("/api/cameras/{name}/controls", controls)
    app.router.add_get("/api/ws", websocket)
    add_timeline(app, cfg.storage, state.cameras.values(), state.metrics.registry, token, STATIC_DIR)
    return app
