"""WHEP playback: any standard WebRTC player (a VMS, go2rtc, a GStreamer whepsrc) watches a camera
track without knowing facestream's own signaling.

WHEP is draft-ietf-wish-whep; its HTTP rules are those of WHIP, RFC 9725: the player POSTs its
SDP offer (`application/sdp`) to the endpoint `/whep/{camera}/{track}`, gets `201 Created` with
the answer and the session's URL in `Location`, and ends the session with DELETE on that URL.
The token goes in `Authorization: Bearer`, as for every other route (auth.py). There is no
trickle ICE or ICE restart (aiortc gathers every candidate before it answers), so PATCH gets 405
with `Allow`, as RFC 9725 asks of a server that supports neither.

Browser players on another origin need CORS: for the origins in `server.cors_origins` (none by
default, and then no CORS header is ever sent), `cors_middleware` answers the preflight OPTIONS
of both URLs itself, without the token (a preflight never carries credentials), and lets those
pages read every WHEP response, errors included, and its Location, Link and ETag headers. The
POST, DELETE and PATCH that follow still need the token.

An offer goes through the same checks, ICE candidate policy, peer caps and pending hold as the
dashboard's (signaling.parse_sdp_offer, ServerState.open_peer): WHEP only changes the envelope.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiortc import RTCPeerConnection

from streamer.config import AppConfig
from streamer.server.auth import Handler, read_body
from streamer.server.camera import CameraRunner
from streamer.server.log_throttle import ThrottledLog
from streamer.server.signaling import MAX_SDP_CHARS, Offer, OfferError, parse_sdp_offer
from streamer.server.tracks import KINDS

log = logging.getLogger(__name__)

SDP = "application/sdp"
SESSION_ROUTE = "whep-session"
ENDPOINT = "/whep/{camera}/{track}"
SESSION = ENDPOINT + "/{session}"
METHODS = {ENDPOINT: ("POST", "OPTIONS"), SESSION: ("DELETE", "PATCH", "OPTIONS")}
"""What each WHEP URL answers. PATCH is listed so a cross-origin player's PATCH reaches us and
reads its 405, instead of being stopped by the browser."""
CORS_REQUEST_HEADERS = "Authorization, Content-Type, If-Match"
CORS_EXPOSED_HEADERS = "Location, Link, ETag"
CORS_MAX_AGE_S = 600


def cors_middleware(origins: Iterable[str]) -> Middleware:
    """CORS for the WHEP URLs and only those (see the module docstring). Placed before the token
    check, so that it can answer preflights and mark the 401s a browser page must be able to read."""
    allowed = frozenset(o.lower() for o in origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        methods = METHODS.get(resource.canonical) if resource is not None else None
        if not allowed or methods is None:
            return await handler(request)
        origin = request.headers.get("Origin", "")
        granted = origin.lower() in allowed
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not granted:
                raise web.HTTPForbidden(text="403: this origin is not in the server's cors_origins")
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": ", ".join(methods),
                    "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS,
                    "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
                    "Vary": "Origin",
                },
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _expose(exc, origin if granted else None)
            raise
        _expose(response, origin if granted else None)
        return response

    return cors


def _expose(response: web.StreamResponse, origin: str | None) -> None:
    response.headers["Vary"] = "Origin"  # the answer differs per Origin: caches must not mix them
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS


class PeerHost(Protocol):
    """What WHEP uses of the server's state (app.ServerState)."""

    cfg: AppConfig
    cameras: dict[str, CameraRunner]
    client_log: ThrottledLog

    async def open_peer(self, runner: CameraRunner, parsed: Offer, client: str) -> RTCPeerConnection: ...

    async def close_peer(self, pc: RTCPeerConnection) -> None: ...


class Whep:
    """The WHEP endpoints and their sessions (session id -> peer connection)."""

    def __init__(self, state: PeerHost) -> None:
        self.state = state
        self.sessions: dict[str, RTCPeerConnection] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(ENDPOINT, self.post),
            web.options(ENDPOINT, self.options),
            web.delete(SESSION, self.delete, name=SESSION_ROUTE),
            web.patch(SESSION, self.patch),
            web.options(SESSION, self.options),
        ]

    def _endpoint(self, request: web.Request) -> tuple[CameraRunner, str]:
        camera, track = request.match_info["camera"], request.match_info["track"]
        runner = self.state.cameras.get(camera)
        if runner is None:
            raise web.HTTPNotFound(text=f"404: no camera named {camera!r}")
        if track not in KINDS:
            raise web.HTTPNotFound(text=f"404: no track {track!r}; tracks are {list(KINDS)}")
        return runner, track

    async def post(self, request: web.Request) -> web.Response:
        runner, track = self._endpoint(request)
        if request.content_type != SDP:
            raise web.HTTPUnsupportedMediaType(text=f"415: send the offer as {SDP}")
        if (request.content_length or 0) > MAX_SDP_CHARS:
            raise web.HTTPRequestEntityTooLarge(MAX_SDP_CHARS, request.content_length or 0)
        raw = await read_body(request, self.state.cfg.server.body_timeout_s)
        if len(raw) > MAX_SDP_CHARS:
            raise web.HTTPRequestEntityTooLarge(MAX_SDP_CHARS, len(raw))
        client = request.remote or "unknown"
        try:
            parsed = parse_sdp_offer(raw.decode("utf-8"), track, self.state.cfg.server.codec)
        except (OfferError, UnicodeDecodeError) as exc:
            reason = str(exc) if isinstance(exc, OfferError) else "the offer is not UTF-8 text"
            self.state.client_log.info("WHEP offer refused (latest from %s): %s", client, reason)
            raise web.HTTPBadRequest(text=f"400: {reason}") from None
        pc = await self.state.open_peer(runner, parsed, client)
        session = secrets.token_urlsafe(16)
        self.sessions[session] = pc

        @pc.on("connectionstatechange")
        def forget() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.sessions.pop(session, None)

        location = request.app.router[SESSION_ROUTE].url_for(camera=runner.name, track=track, session=session)
        headers = {"Location": str(location)}
        links = [f'<{url}>; rel="ice-server"' for url in self.state.cfg.server.stun_servers]
        if links:
            headers["Link"] = ", ".join(links)
        log.info("WHEP session for %s/%s (%s) from %s", runner.name, track, parsed.codec, client)
        return web.Response(status=201, text=pc.localDescription.sdp, content_type=SDP, headers=headers)

    def _session(self, request: web.Request) -> RTCPeerConnection:
        self._endpoint(request)
        pc = self.sessions.get(request.match_info["session"])
        if pc is None:
            raise web.HTTPNotFound(text="404: no such WHEP session (it ended, or never existed)")
        return pc

    async def delete(self, request: web.Request) -> web.Response:
        pc = self._session(request)
        self.sessions.pop(request.match_info["session"], None)
        await self.state.close_peer(pc)
        return web.Response(text="session ended")

    async def patch(self, request: web.Request) -> web.Response:
        self._session(request)
        raise web.HTTPMethodNotAllowed(
            "PATCH",
            ["DELETE", "OPTIONS"],
            text="405: no trickle ICE or ICE restart; the answer already holds every candidate",
        )

    async def options(self, request: web.Request) -> web.Response:
        """A plain OPTIONS with the token (preflights are cors_middleware's): what the URL allows."""
        resource = request.match_info.route.resource
        assert resource is not None
        return web.Response(status=204, headers={"Allow": ", ".join(METHODS[resource.canonical])})
