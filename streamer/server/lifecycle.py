"""Start, run and stop the server: `serve` for the CLI, `start_server` for tests and benchmarks."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import ssl
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from streamer.config import AppConfig, ConfigError, validate
from streamer.server.app import STATE, CameraFactory, ServerState, create_app
from streamer.server.auth import make_token
from streamer.server.camera import ProcessorFactory
from streamer.server.latency import LatencyLog
from streamer.server.signaling import enable_loopback_fallback, set_video_bitrate

log = logging.getLogger(__name__)

NOISY_LOGGERS = ("aioice", "aiortc", "aiohttp.access")


@dataclass
class RunningServer:
    """A started server. `url` opens the dashboard (token included)."""

    runner: web.AppRunner
    base_url: str
    token: str
    state: ServerState

    @property
    def url(self) -> str:
        return f"{self.base_url}/?token={quote(self.token, safe='')}"

    async def stop(self) -> None:
        await self.runner.cleanup()


M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Frames (hundreds of KB each) are allocated in one thread and freed in another (camera
    thread, encoder executor threads, event loop). glibc then grows one heap arena per busy thread
    and keeps the freed memory mapped: measured here, two cameras with two viewers settled about
    140 MB higher with glibc's default arena count than with 2. No effect off glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        log.debug("not glibc: malloc arenas left as they are")


def ssl_context(cert: str, key: str) -> ssl.SSLContext | None:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert!r} / key {key!r}: {exc}") from None
    return context


async def start_server(
    cfg: AppConfig,
    processor_factory: ProcessorFactory | None = None,
    latency_log: LatencyLog | None = None,
    camera_factory: CameraFactory | None = None,
) -> RunningServer:
    """Start the app on cfg.server.host:port (port 0 picks a free one) and return at once;
    cameras warm up in their threads."""
    validate(cfg)
    sv = cfg.server
    context = ssl_context(sv.cert, sv.key)
    set_video_bitrate(sv.bitrate_kbps)
    enable_loopback_fallback()
    limit_malloc_arenas()
    token = make_token(sv.token)
    app = create_app(cfg, token, processor_factory, latency_log, camera_factory)
    state = app[STATE]
    # aiohttp's keep-alive timer also runs from the moment a connection opens until a whole request
    # head has arrived, so it is the header timeout as well as the idle one. Its request handler
    # logs protocol errors to `logger`: the throttled client log.
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=5.0,
        keepalive_timeout=sv.idle_timeout_s,
        logger=state.client_log,
    )
    try:
        await runner.setup()  # app startup: cameras, and the RTSP server if asked for
    except ConfigError:
        await runner.cleanup()
        raise
    site = web.TCPSite(runner, sv.host, sv.port, ssl_context=context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {sv.host}:{sv.port}: {exc.strerror or exc}; pick another port with --port"
        ) from None
    port = runner.addresses[0][1]
    state.origins.bind(port)
    host = sv.host if sv.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if context else "http"
    return RunningServer(runner, f"{scheme}://{host}:{port}", token, state)


async def _serve_forever(cfg: AppConfig, camera_factory: CameraFactory | None) -> None:
    server = await start_server(cfg, camera_factory=camera_factory)
    print(f"facestream: open {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()


def serve(cfg: AppConfig, camera_factory: CameraFactory | None = None) -> int:
    """Run until Ctrl-C / SIGTERM. Prints exactly one line: the URL to open (token included).
    `camera_factory` puts the cameras elsewhere (the Ray cluster); the default runs them here."""
    for name in NOISY_LOGGERS:
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    asyncio.run(_serve_forever(cfg, camera_factory))
    return 0
