"""Access token and response hardening for every route.

Surveillance video is sensitive, so everything (page, static files, signaling, WebSocket,
metrics) needs the token, given as `?token=` (what the printed URL and the page's WebSocket
use) or `Authorization: Bearer` (what the page's fetch calls and scrapers use). Only `/healthz`
is open, and it says nothing but ok/degraded, so a process supervisor can probe it without the
secret. Tokens are compared in constant time.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_token(configured: str) -> str:
    return configured or secrets.token_urlsafe(24)


def request_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token", "")


def token_middleware(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            given = request_token(request).encode()
            if not secrets.compare_digest(given, expected):
                log.info(
                    "refused %s %s from %s: %s token",
                    request.method,
                    request.path,
                    request.remote,
                    "wrong" if given else "no",
                )
                raise web.HTTPUnauthorized(
                    text="401: a valid access token is required (open the URL printed at server start)",
                    headers={"WWW-Authenticate": 'Bearer realm="facestream"'},
                )
        return await handler(request)

    return check_token


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No caching of token-bearing pages, no referrer leaking the token, no framing, and a CSP
    that only lets the dashboard talk to this server."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _harden(response, request)
        raise
    _harden(response, request)
    return response


def _harden(response: web.StreamResponse, request: web.Request) -> None:
    if response.prepared:  # WebSocket or streamed: headers already sent
        return
    host = request.host
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"media-src 'self' blob:; connect-src 'self' ws://{host} wss://{host}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    )
