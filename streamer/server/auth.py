"""Access token, allowed origins and response hardening for every route.

Surveillance video is sensitive, so everything (page, static files, signaling, WebSocket,
metrics) needs the token, given as `?token=` (what the printed URL and the page's WebSocket
use) or `Authorization: Bearer` (what the page's fetch calls and scrapers use). Only `/healthz`
is open, and without the token it says nothing but ok/degraded, so a process supervisor can
probe it without the secret. Tokens are compared in constant time.

Browsers send the token-free `Origin` of the page that opens a WebSocket; a page on another
site (or a DNS-rebinding name pointing at us) must not read the metadata stream, so the socket
only accepts the server's own origins and the configured `ws_origins`. The CSP names the same
origins, built from the configured host: the request's `Host` header is the client's to choose.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from streamer.server.log_throttle import ThrottledLog

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OriginKey = tuple[str, str, int]


def make_token(configured: str) -> str:
    return configured or secrets.token_urlsafe(24)


def request_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token", "")


def token_matches(given: str, expected: str) -> bool:
    """aiohttp decodes header bytes that are not UTF-8 as surrogates; encoding them back the same
    way compares the bytes the client really sent, instead of raising on them."""
    return secrets.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def token_middleware(token: str, client_log: ThrottledLog) -> Middleware:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            given = request_token(request)
            if not token_matches(given, token):
                client_log.info(
                    "refused a request without a valid token: %s %s from %s (%s token)",
                    request.method,
                    request.path[:100],
                    request.remote,
                    "wrong" if given else "no",
                )
                raise web.HTTPUnauthorized(
                    text="401: a valid access token is required (open the URL printed at server start)",
                    headers={"WWW-Authenticate": 'Bearer realm="facestream"'},
                )
        return await handler(request)

    return check_token


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The whole body, or 408 when it does not arrive within `timeout_s` (a client trickling a
    body would otherwise hold a handler forever); oversized -> 413 (aiohttp's client_max_size)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="408: the request body did not arrive in time") from None


def _origin_key(origin: str) -> OriginKey | None:
    try:
        url = URL(origin)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host or url.port is None:
        return None
    return url.scheme, url.host.lower().strip("[]"), url.port


class Origins:
    """The origins this server's pages are served from, once its port is known (`bind`)."""

    def __init__(
        self, host: str, scheme: str, extra: tuple[str, ...], interface_hosts: Callable[[], list[str]]
    ):
        self.scheme = scheme
        if host in WILDCARD_HOSTS:
            hosts = [*interface_hosts(), "127.0.0.1", "::1", "localhost"]
        elif host == "localhost" or _is_loopback(host):
            hosts = [host, "localhost"]
        else:
            hosts = [host]
        self.hosts = tuple(dict.fromkeys(h.lower() for h in hosts))
        self.extra = tuple(extra)
        self.port = 0
        self._allowed: frozenset[OriginKey] = frozenset()
        self.csp = ""

    def bind(self, port: int) -> None:
        self.port = port
        own = [f"{self.scheme}://{_url_host(h)}:{port}" for h in self.hosts]
        origins = [*own, *self.extra]
        self._allowed = frozenset(k for k in map(_origin_key, origins) if k is not None)
        sockets = " ".join(f"{ws}://{o.split('://', 1)[1]}" for o in origins for ws in ("ws", "wss"))
        self.csp = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"media-src 'self' blob:; connect-src 'self' {sockets}; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        )

    def allows(self, origin: str) -> bool:
        return _origin_key(origin) in self._allowed


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def hardening_middleware(origins: Origins, error_log: ThrottledLog) -> Middleware:
    """No caching of token-bearing pages, no referrer leaking the token, no framing, a CSP that
    only lets the dashboard talk to this server; and any exception a handler did not expect
    becomes a logged 500 with those headers and a body that gives nothing away."""

    @web.middleware
    async def harden(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _harden(exc, origins.csp)
            raise
        except Exception:
            error_log.exception("unexpected error in %s %s", request.method, request.path[:100])
            response = web.Response(status=500, text="500: internal server error (logged on the server)")
        _harden(response, origins.csp)
        return response

    return harden


def _harden(response: web.StreamResponse, csp: str) -> None:
    if response.prepared:  # WebSocket or streamed: headers already sent
        return
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", csp)
