"""The aiohttp application: dashboard, signaling, controls, metadata WebSocket, health, metrics.

Routes (all but /healthz need the token, see auth.py):
    GET  /                                  dashboard page
    GET  /static/{file}                     its CSS/JS
    GET  /api/cameras                       cameras, their sizes, controls, backend, status
    POST /api/cameras/{name}/offer          {sdp, type, tracks?, codec?, rendition?}
                                            -> {sdp, type, tracks, codec, rendition, peer}
    POST /api/cameras/{name}/watch          {peer, tracks}: which of that peer's tracks it shows
                                            (the others are not sent, nor encoded for it)
    POST /api/cameras/{name}/controls       {scale?, mode?, detect_interval?, upscale?} -> controls
    GET  /api/ws                            per-frame metadata and face thumbnails (JSON messages)
    POST /whep/{camera}/{track}             WHEP: SDP offer -> 201, SDP answer, Location (whep.py)
    DELETE /whep/{camera}/{track}/{session} ends that WHEP session
    OPTIONS /whep/...                       CORS preflight for server.cors_origins, no token (whep.py)
    GET  /metrics                           Prometheus text format
    GET  /healthz                           {"status": "ok" | "degraded"}; with the token also
                                            {"down": [cameras not live, with state and last error]}
    /faces, /api/faces...                   the face timeline (timeline_api.py)

Every error a client can cause ends as a 4xx whose text is ours, never an exception's: the
handlers check what they are sent before anything deeper sees it, and auth.py's middleware turns
whatever still escapes into a generic 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aioice.ice
from aiohttp import WSCloseCode, WSMsgType, web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from streamer.config import AppConfig, ConfigError, SourceConfig, live_settings
from streamer.server.auth import (
    Origins,
    hardening_middleware,
    read_body,
    request_token,
    token_matches,
    token_middleware,
)
from streamer.server.camera import CameraRunner, ProcessorFactory
from streamer.server.latency import LatencyLog
from streamer.server.log_throttle import ThrottledLog
from streamer.server.metrics import Metrics
from streamer.server.recording import Recordings
from streamer.server.rtsp_out import RtspOut
from streamer.server.signaling import (
    CandidatePolicy,
    Offer,
    OfferError,
    PeerCaps,
    PeerLimitError,
    PendingOffers,
    add_senders,
    parse_offer,
    rtc_configuration,
)
from streamer.server.timeline_api import add_timeline
from streamer.server.tracks import KINDS, CameraTracks, PacketTrack
from streamer.server.whep import Whep, cors_middleware

CameraFactory = Callable[[AppConfig, SourceConfig, Metrics], tuple[CameraRunner, CameraTracks]]
"""Builds a camera and what its viewers subscribe to, where they are not the local ones (the
Ray cluster's remote cameras, streamer/cluster/head.py)."""

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_BODY_BYTES = 256 * 1024
WS_MAX_HZ = 15.0
WS_STATUS_INTERVAL_S = 1.0
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
        camera_factory: CameraFactory | None = None,
    ) -> None:
        sv = cfg.server
        self.cfg = cfg
        self.token = token
        self.metrics = Metrics()
        self.caps = PeerCaps(sv.max_peers_total, sv.max_peers_per_client)
        self.pending = PendingOffers(sv.max_pending_offers)
        self.candidates = CandidatePolicy.from_config(sv.ice_networks)
        self.origins = Origins(
            sv.host,
            "https" if sv.cert else "http",
            sv.ws_origins,
            lambda: aioice.ice.get_host_addresses(True, True),
        )
        self.client_log = ThrottledLog(logging.getLogger("streamer.server.clients"))
        """Where lines that any client can cause go: aiohttp's protocol errors, refusals, 500s."""
        self.latency_log = latency_log
        self.cameras: dict[str, CameraRunner] = {}
        self.tracks: dict[str, CameraTracks] = {}
        self.peers: dict[RTCPeerConnection, tuple[str, str]] = {}
        self.peer_tracks: dict[RTCPeerConnection, dict[str, MediaStreamTrack]] = {}
        """Each peer's tracks by kind, as its senders read them."""
        self.peer_ids: dict[str, RTCPeerConnection] = {}
        """The ids the offer route hands out, for /watch; unguessable, so a dashboard can only
        change what its own peer connections receive."""
        self.connected: set[RTCPeerConnection] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self.ws_event = asyncio.Event()
        self.sockets: set[web.WebSocketResponse] = set()
        for source in cfg.sources:
            if camera_factory is None:
                runner = CameraRunner(cfg, source, self.metrics, processor_factory, latency_log)
                tracks = CameraTracks(runner, cfg.server, latency_log)
            else:
                runner, tracks = camera_factory(cfg, source, self.metrics)
            self.cameras[runner.name] = runner
            self.tracks[runner.name] = tracks
            self._watch(runner, tracks)
        self.rtsp = RtspOut(sv, token, self.tracks, self.metrics.registry) if sv.rtsp_out else None
        self.recordings = (
            Recordings(cfg.record, self.tracks, self.metrics.registry) if cfg.record.dir else None
        )

    def _watch(self, runner: CameraRunner, tracks: CameraTracks) -> None:
        def encoding(kind: str) -> Callable[[], float]:
            return lambda: float(tracks.encoding(kind))

        self.metrics.add_camera(
            runner.name,
            fps=lambda: runner.fps,
            up=lambda: float(runner.status.up),
            frame_age=lambda: runner.last_frame_age,
            encoding={kind: encoding(kind) for kind in KINDS},
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for runner in self.cameras.values():
            runner.add_listener(self._wake_ws)
            runner.start(loop)
        if self.recordings is not None:
            self.recordings.start()
        if self.rtsp is not None:
            await self.rtsp.start()

    def _wake_ws(self) -> None:
        event, self.ws_event = self.ws_event, asyncio.Event()
        event.set()

    def promote(self, pc: RTCPeerConnection) -> bool:
        """A pending peer connected: it takes a slot under the peer caps (False: none left)."""
        owner = self.peers.get(pc)
        if owner is None or self.pending.remove(pc) is None:
            return pc in self.connected
        client, camera = owner
        try:
            self.caps.acquire(client)
        except PeerLimitError as exc:
            self.metrics.rejected.labels("per_client" if exc.status == 429 else "total").inc()
            return False
        self.connected.add(pc)
        runner = self.cameras[camera]
        runner.viewers += 1
        self.update_peer_gauges(camera)
        return True

    async def open_peer(self, runner: CameraRunner, parsed: Offer, client: str) -> RTCPeerConnection:
        """A peer connection that answered `parsed` (its local description is the answer), held
        as pending until it connects: what the JSON offer route and WHEP share. Raises the HTTP
        error the client gets: the peer caps (429/503), an offer aiortc cannot apply (400)."""
        sdp, refused = self.candidates.filter_sdp(parsed.sdp)
        if refused:
            self.client_log.info(
                "offer from %s: ICE candidates outside the policy dropped: %s", client, refused[:8]
            )
        try:
            self.caps.check(client, self.pending.count(client))
        except PeerLimitError as exc:
            self.metrics.rejected.labels("per_client" if exc.status == 429 else "total").inc()
            raise _limit_response(exc) from None

        pc = RTCPeerConnection(rtc_configuration(self.cfg.server.stun_servers))
        self.peers[pc] = (client, runner.name)
        evicted = self.pending.add(pc, client)
        if isinstance(evicted, RTCPeerConnection):
            self.metrics.rejected.labels("pending_evicted").inc()
            self.close_soon(evicted)
        self.update_peer_gauges(runner.name)
        # Whatever happens next (bad SDP, a client that never completes ICE, a dropped request),
        # the pending hold ends within pending_timeout_s.
        timeout = self.cfg.server.pending_timeout_s
        asyncio.get_running_loop().call_later(timeout, _drop_if_unconnected, self, pc, timeout)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected" and not self.promote(pc):
                log.info(
                    "viewer %s connected to %s after the peer caps filled up; closing it", client, runner.name
                )
                await self.close_peer(pc)
            elif pc.connectionState in ("failed", "closed"):
                await self.close_peer(pc)

        try:
            # Our transceivers exist before the offer is applied: aiortc negotiates codecs inside
            # setRemoteDescription, and binds the offer's video m-lines to them in order.
            transceivers = add_senders(pc, self.tracks[runner.name], parsed)
            self.peer_tracks[pc] = {
                kind: t.sender.track for kind, t in zip(parsed.tracks, transceivers, strict=True)
            }
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # an offer the checks let through that aiortc still cannot use
            await self.close_peer(pc)
            self.client_log.info(
                "offer for %s refused by aiortc (latest from %s): %s: %s",
                runner.name,
                client,
                type(exc).__name__,
                exc,
            )
            raise web.HTTPBadRequest(
                text="400: cannot use this offer: its codecs, ICE or DTLS parameters could not be applied"
            ) from None
        log.info(
            "viewer %s answered for %s (%s %s, %s)",
            client,
            runner.name,
            parsed.codec,
            parsed.rendition,
            ",".join(parsed.tracks),
        )
        return pc

    async def close_peer(self, pc: RTCPeerConnection) -> None:
        """Free the peer's slot and close it; never raises (a half-built peer connection can
        fail inside aiortc's close, and a caller is usually handling another error already)."""
        owner = self.peers.pop(pc, None)
        self.pending.remove(pc)
        self.peer_tracks.pop(pc, None)
        for peer_id in [k for k, v in self.peer_ids.items() if v is pc]:
            del self.peer_ids[peer_id]
        if owner is not None:
            client, camera = owner
            if pc in self.connected:
                self.connected.discard(pc)
                self.caps.release(client)
                runner = self.cameras[camera]
                runner.viewers = max(0, runner.viewers - 1)
            self.update_peer_gauges(camera)
        try:
            for sender in pc.getSenders():
                if sender.track is not None:  # aiortc leaves them live: unsubscribe from encoder/relay
                    sender.track.stop()
            await pc.close()
        except Exception:
            log.warning("a peer connection failed to close cleanly", exc_info=True)

    def close_soon(self, pc: RTCPeerConnection) -> None:
        """close_peer from a callback; the task is kept until done (the loop holds only weak refs)."""
        task = asyncio.ensure_future(self.close_peer(pc))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def update_peer_gauges(self, camera: str) -> None:
        self.metrics.viewers.labels(camera).set(self.cameras[camera].viewers)
        self.metrics.peers.set(len(self.connected))
        self.metrics.pending.set(len(self.pending))

    async def stop(self) -> None:
        """Open dashboards would otherwise keep the server waiting for their WebSockets."""
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in list(self.sockets)),
            return_exceptions=True,
        )
        await asyncio.gather(*(self.close_peer(pc) for pc in list(self.peers)), return_exceptions=True)
        if self.rtsp is not None:
            await self.rtsp.stop()
        if self.recordings is not None:
            await self.recordings.stop()
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
    """The parsed body; oversized -> 413 (aiohttp's client_max_size), too slow -> 408, not JSON
    (or nested past what the parser can recurse into) -> 400."""
    raw = await read_body(request, _state(request).cfg.server.body_timeout_s)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise web.HTTPBadRequest(text="400: body must be JSON") from None


# -- pages -------------------------------------------------------------------------------------
async def index(request: web.Request) -> web.Response:
    """The page, with the token put into its asset URLs (the static routes need it too)."""
    html = (STATIC_DIR / "index.html").read_text()
    html = html.replace("{{token}}", quote(_state(request).token, safe=""))
    return web.Response(text=html, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    """Open to probes; which cameras are down (names, errors) only with the token."""
    state = _state(request)
    down = [r for r in state.cameras.values() if not r.status.up]
    body: dict[str, Any] = {"status": "degraded" if down else "ok"}
    if token_matches(request_token(request), state.token):
        body["down"] = [_status_info(r) for r in down]
    return web.json_response(body, status=503 if down else 200)


async def metrics(request: web.Request) -> web.Response:
    state = _state(request)
    body = state.metrics.render()
    return web.Response(body=body, headers={"Content-Type": state.metrics.content_type})


def _status_info(runner: CameraRunner) -> dict[str, Any]:
    status = runner.status
    return {
        "name": runner.name,
        "status": status.state,
        "up": status.up,
        "attempt": status.attempt,
        "last_error": status.last_error,
        "error": runner.error,
        "last_frame_age_s": round(runner.last_frame_age, 1),
        "fps": round(runner.fps, 2),
        "viewers": runner.viewers,
    }


def _camera_info(runner: CameraRunner) -> dict[str, Any]:
    latest = runner.latest
    processor = runner.processor
    info = _status_info(runner)
    info["backend"] = processor.backend_name if processor is not None else ""
    info["controls"] = processor.controls if processor is not None else {}
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
            "renditions": _renditions(state),
        }
    )


def _renditions(state: ServerState) -> dict[str, int]:
    """Rendition name -> kbit/s; the same for every camera."""
    first = next(iter(state.tracks.values()))
    return {name: r.bitrate_kbps for name, r in first.renditions.items()}


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
    client = request.remote or "unknown"
    try:
        parsed = parse_offer(body, state.cfg.server.codec, KINDS, tuple(state.tracks[runner.name].renditions))
    except OfferError as exc:
        state.client_log.info("offer refused (latest from %s): %s", client, exc)
        raise web.HTTPBadRequest(text=f"400: {exc}") from None
    pc = await state.open_peer(runner, parsed, client)
    peer_id = secrets.token_urlsafe(16)
    if pc in state.peers:  # not displaced from the pending hold (and closed) while it answered
        state.peer_ids[peer_id] = pc
    return web.json_response(
        {
            "sdp": pc.localDescription.sdp,
            "type": pc.localDescription.type,
            "tracks": list(parsed.tracks),
            "codec": parsed.codec,
            "rendition": parsed.rendition,
            "peer": peer_id,
        }
    )


async def watch(request: web.Request) -> web.Response:
    """Which of a peer's tracks its viewer shows; the others stop being sent to it, and a
    camera track nobody shows is not encoded at all. Needs the shared encoder (409 without:
    per-viewer encoding reads every frame of both kinds through one relay)."""
    state = _state(request)
    runner = _camera(request)
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='400: send a JSON object {"peer": id, "tracks": [...]}')
    peer_id = body.get("peer")
    pc = state.peer_ids.get(peer_id) if isinstance(peer_id, str) else None
    if pc is None or state.peers.get(pc, ("", ""))[1] != runner.name:
        raise web.HTTPNotFound(text=f"404: no open peer connection with that 'peer' id on {runner.name!r}")
    tracks = state.peer_tracks.get(pc, {})
    shown = body.get("tracks")
    if (
        not isinstance(shown, list)
        or any(not isinstance(t, str) or t not in tracks for t in shown)
        or len(set(shown)) != len(shown)
    ):
        raise web.HTTPBadRequest(text=f"400: 'tracks' must be a list of distinct names from {list(tracks)}")
    feeds = {kind: t for kind, t in tracks.items() if isinstance(t, PacketTrack)}
    if len(feeds) != len(tracks):
        raise web.HTTPConflict(text="409: choosing tracks needs server.shared_encoder")
    for kind, feed in feeds.items():
        feed.watch(kind in shown)
    return web.json_response({"camera": runner.name, "peer": peer_id, "tracks": shown})


def _limit_response(exc: PeerLimitError) -> web.HTTPException:
    cls = web.HTTPTooManyRequests if exc.status == 429 else web.HTTPServiceUnavailable
    return cls(text=f"{exc.status}: {exc}")


def _drop_if_unconnected(state: ServerState, pc: RTCPeerConnection, timeout: float) -> None:
    """A peer that never completes ICE would hold its pending place until displaced; end it."""
    if pc in state.pending:
        state.client_log.info("closing an offer that did not connect within %.0f s", timeout)
        state.close_soon(pc)


# -- metadata WebSocket ------------------------------------------------------------------------
async def websocket(request: web.Request) -> web.WebSocketResponse:
    state = _state(request)
    origin = request.headers.get("Origin")
    if origin is not None and not state.origins.allows(origin):
        state.client_log.info("refused a metadata WebSocket from origin %s", origin[:100])
        raise web.HTTPForbidden(text="403: this page's origin may not open the metadata socket")
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
            "renditions": _renditions(state),
        }
    )
    sent_seq = {r.name: 0 for r in runners}
    sent_thumbs = {r.name: 0 for r in runners}
    last_sent = {r.name: 0.0 for r in runners}
    last_status = time.monotonic()
    while not ws.closed:
        event = state.ws_event
        try:
            await asyncio.wait_for(event.wait(), timeout=WS_STATUS_INTERVAL_S)
        except TimeoutError:
            pass
        now = time.monotonic()
        if now - last_status >= WS_STATUS_INTERVAL_S:  # a camera that is down sends no frames to say so
            await ws.send_json({"type": "status", "cameras": [_status_info(r) for r in runners]})
            last_status = now
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
    camera_factory: CameraFactory | None = None,
) -> web.Application:
    state = ServerState(cfg, token, processor_factory, latency_log, camera_factory)
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            hardening_middleware(state.origins, state.client_log),
            cors_middleware(cfg.server.cors_origins),
            token_middleware(token, state.client_log),
        ],
    )
    app[STATE] = state

    async def on_startup(app: web.Application) -> None:
        await state.start()

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
    app.router.add_post("/api/cameras/{name}/watch", watch)
    app.router.add_get("/api/ws", websocket)
    add_timeline(
        app,
        cfg.storage,
        state.cameras.values(),
        state.metrics.registry,
        token,
        STATIC_DIR,
        Path(cfg.record.dir) if cfg.record.dir else None,
    )
    app.router.add_routes(Whep(state).routes())
    return app
