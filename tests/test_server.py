"""The server's HTTP side with a real app on a free port: token checks, bad requests, peer caps,
health, metrics, controls, HTTPS; plus the latency stamp, the bitrate override and the loopback
ICE fallback. Cameras run the real pipeline (bicubic engine) on the real demo source."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiortc import RTCPeerConnection
from aiortc.codecs import h264, vpx
from aiortc.codecs.vpx import Vp8Encoder
from conftest import make_self_signed

from devtools.viewer import ViewerError, connect_viewer
from streamer.config import AppConfig, ConfigError, EnhanceConfig, ServerConfig, SourceConfig, validate
from streamer.server import RunningServer, signaling, start_server
from streamer.server.auth import make_token
from streamer.server.latency import LatencyLog, draw_stamp, read_stamp

module_loop = pytest.mark.asyncio(loop_scope="module")


def small_cfg(**server: object) -> AppConfig:
    src = SourceConfig(uri="demo", name="cam1", demo_width=640, demo_height=360, demo_fps=15.0)
    return AppConfig(
        sources=(src,), enhance=EnhanceConfig(engine="bicubic"), server=ServerConfig(**{"port": 0, **server})
    )  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[RunningServer]:
    srv = await start_server(small_cfg(token="s3cret-token", max_peers_per_client=2, max_peers_total=3))
    yield srv
    await srv.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@module_loop
async def test_every_route_but_healthz_needs_the_token(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    base = server.base_url
    routes = [
        ("GET", "/"),
        ("GET", "/static/app.js"),
        ("GET", "/api/cameras"),
        ("GET", "/metrics"),
        ("GET", "/api/ws"),
        ("POST", "/api/cameras/cam1/offer"),
        ("POST", "/api/cameras/cam1/controls"),
    ]
    for method, path in routes:
        for headers in ({}, bearer("wrong"), {"Authorization": "Basic czNjcmV0LXRva2Vu"}):
            async with http.request(method, base + path, headers=headers, json={}) as resp:
                assert resp.status == 401, (method, path, headers)
        async with http.request(method, base + path + "?token=nope") as resp:
            assert resp.status == 401, (method, path)
    async with http.get(base + "/healthz") as resp:
        assert resp.status in (200, 503)
        assert set(await resp.json()) == {"status"}


@module_loop
async def test_token_in_query_or_header_opens_the_page(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.url) as resp:
        assert resp.status == 200
        html = await resp.text()
        assert f"/static/app.js?token={server.token}" in html
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
    async with http.get(server.base_url + "/static/app.css", headers=bearer(server.token)) as resp:
        assert resp.status == 200
        assert "--bg" in await resp.text()
    async with http.get(server.base_url + "/static/../app.py", headers=bearer(server.token)) as resp:
        assert resp.status in (403, 404)


def test_generated_token_is_long_and_random_and_binding_is_loopback() -> None:
    tokens = {make_token("") for _ in range(20)}
    assert len(tokens) == 20 and all(len(t) >= 32 for t in tokens)
    assert make_token("given") == "given"
    assert ServerConfig().host == "127.0.0.1"


@module_loop
async def test_bad_offers_get_4xx_and_the_server_keeps_serving(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    url = server.base_url + "/api/cameras/cam1/offer"
    h = bearer(server.token)
    cases: list[tuple[object, int]] = [
        (b"not json {", 400),
        ([1, 2, 3], 400),
        ({"type": "offer"}, 400),
        ({"sdp": "hello", "type": "offer"}, 400),
        ({"sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video", "type": "offer"}, 400),
        ({"sdp": "v=0\r\n", "type": "answer"}, 400),
        ({"sdp": "v=0\r\n", "type": "offer", "codec": "av1"}, 400),
        ({"sdp": "v=0\r\n", "type": "offer", "tracks": ["thermal"]}, 400),
    ]
    for body, status in cases:
        kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with http.post(url, headers=h, **kwargs) as resp:
            assert resp.status == status, body
            assert (await resp.text()).startswith("400:")
    async with http.post(url, headers=h, data=b"{" + b" " * (300 * 1024) + b"}") as resp:
        assert resp.status == 413
    async with http.post(server.base_url + "/api/cameras/nope/offer", headers=h, json={}) as resp:
        assert resp.status == 404
    async with http.get(server.base_url + "/api/cameras", headers=h) as resp:
        assert resp.status == 200
        assert [c["name"] for c in (await resp.json())["cameras"]] == ["cam1"]


@module_loop
async def test_a_real_offer_with_an_audio_only_sdp_is_refused(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with http.post(
            server.base_url + "/api/cameras/cam1/offer",
            headers=bearer(server.token),
            json={"sdp": pc.localDescription.sdp, "type": "offer"},
        ) as resp:
            assert resp.status == 400
            assert "video" in await resp.text()
    finally:
        await pc.close()
    assert server.state.caps.total == 0


@module_loop
async def test_peer_caps_per_client_and_in_total() -> None:
    srv = await start_server(small_cfg(max_peers_per_client=1, max_peers_total=5))
    viewers = []
    try:
        viewers.append(await connect_viewer(srv.base_url, srv.token, "cam1", lambda *a: None))
        with pytest.raises(ViewerError) as err:
            await connect_viewer(srv.base_url, srv.token, "cam1", lambda *a: None)
        assert err.value.status == 429 and "too many" in str(err.value)
    finally:
        for v in viewers:
            await v.close()
        await srv.stop()

    srv = await start_server(small_cfg(max_peers_per_client=4, max_peers_total=1))
    viewers = []
    frames: list[int] = []
    try:
        viewers.append(
            await connect_viewer(
                srv.base_url, srv.token, "cam1", lambda k, f, t: frames.append(f.width), tracks=("original",)
            )
        )
        for _ in range(300):  # connected and streaming, so closing it is a clean DTLS shutdown
            if frames:
                break
            await asyncio.sleep(0.1)
        assert frames
        with pytest.raises(ViewerError) as err:
            await connect_viewer(srv.base_url, srv.token, "cam1", lambda *a: None)
        assert err.value.status == 503 and "limit" in str(err.value)
        await viewers.pop().close()
        for _ in range(100):  # the server frees the slot when the peer's connection closes
            if srv.state.caps.total == 0:
                break
            await asyncio.sleep(0.1)
        viewers.append(await connect_viewer(srv.base_url, srv.token, "cam1", lambda *a: None))
    finally:
        for v in viewers:
            await v.close()
        await srv.stop()


@module_loop
async def test_controls_validate_and_apply(server: RunningServer, http: aiohttp.ClientSession) -> None:
    url = server.base_url + "/api/cameras/cam1/controls"
    h = bearer(server.token)
    camera = server.state.cameras["cam1"]
    for _ in range(100):
        if camera.processor is not None:
            break
        await asyncio.sleep(0.1)
    for body in ({}, {"scale": 5}, {"scale": "8"}, {"mode": "sepia"}, {"detect_interval": 0}, {"speed": 1}):
        async with http.post(url, headers=h, json=body) as resp:
            assert resp.status == 400, body
    async with http.post(url, headers=h, json={"detect_interval": 5, "mode": "inset"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["applied"] == {"detect_interval": 5, "mode": "inset"}
    for _ in range(100):
        if camera.processor.controls["detect_interval"] == 5:
            break
        await asyncio.sleep(0.1)
    assert camera.processor.controls["mode"] == "inset"
    async with http.post(url, headers=h, json={"mode": "upscale"}) as resp:
        assert resp.status == 200
    async with http.post(
        server.base_url + "/api/cameras/zzz/controls", headers=h, json={"mode": "inset"}
    ) as resp:
        assert resp.status == 404


@module_loop
async def test_metrics_and_health(server: RunningServer, http: aiohttp.ClientSession) -> None:
    camera = server.state.cameras["cam1"]
    for _ in range(150):
        if camera.latest is not None and camera.latest.seq >= 3:
            break
        await asyncio.sleep(0.1)
    async with http.get(server.base_url + "/metrics", headers=bearer(server.token)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    for name in (
        'facestream_camera_fps{camera="cam1"}',
        'facestream_stage_seconds_count{camera="cam1",stage="detect"}',
        'facestream_faces{camera="cam1"}',
        'facestream_frames_dropped_total{camera="cam1"}',
        'facestream_viewers{camera="cam1"}',
        "facestream_peer_connections",
        'facestream_capture_to_publish_seconds_count{camera="cam1"}',
    ):
        assert name in text, name
    processed = [
        line
        for line in text.splitlines()
        if line.startswith('facestream_frames_processed_total{camera="cam1"}')
    ]
    assert float(processed[0].split()[-1]) >= 3
    async with http.get(server.base_url + "/healthz") as resp:
        assert resp.status == 200 and (await resp.json()) == {"status": "ok"}


@module_loop
async def test_a_camera_that_cannot_start_makes_health_degraded(http: aiohttp.ClientSession) -> None:
    cfg = AppConfig(
        sources=(SourceConfig(uri="/nonexistent/video.mp4", name="broken"),),
        enhance=EnhanceConfig(engine="bicubic"),
        server=ServerConfig(port=0),
    )
    srv = await start_server(cfg)
    try:
        await asyncio.to_thread(srv.state.cameras["broken"].wait_ready, 30)
        async with http.get(srv.base_url + "/healthz") as resp:
            assert resp.status == 503 and (await resp.json())["status"] == "degraded"
        async with http.get(srv.base_url + "/api/cameras", headers=bearer(srv.token)) as resp:
            info = (await resp.json())["cameras"][0]
        assert info["status"] == "error" and "nonexistent" in info["error"]
    finally:
        await srv.stop()


@module_loop
async def test_websocket_needs_token_and_streams_metadata(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with http.ws_connect(server.base_url + "/api/ws"):
            pass
    assert err.value.status == 401
    kinds: dict[str, dict] = {}
    async with http.ws_connect(f"{server.base_url}/api/ws?token={server.token}") as ws:
        while "frame" not in kinds:
            msg = await asyncio.wait_for(ws.receive_json(), timeout=20)
            kinds.setdefault(msg["type"], msg)
    hello, frame = kinds["hello"], kinds["frame"]
    assert [c["name"] for c in hello["cameras"]] == ["cam1"]
    assert frame["camera"] == "cam1" and frame["frame_size"] == [640, 360]
    assert {"detect", "track", "crop", "enhance", "composite"} <= set(frame["stages_ms"])
    for key in ("fps", "dropped", "tracks", "pipeline_ms", "backend", "controls"):
        assert key in frame
    assert all(len(t["box"]) == 4 and isinstance(t["id"], int) for t in frame["tracks"])


@module_loop
async def test_websocket_count_is_capped(
    server: RunningServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamer.server import app as app_module

    monkeypatch.setattr(app_module, "MAX_SOCKETS", 1)
    url = f"{server.base_url}/api/ws?token={server.token}"
    async with http.ws_connect(url) as first:
        await asyncio.wait_for(first.receive_json(), 20)
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            async with http.ws_connect(url):
                pass
        assert err.value.status == 503


@module_loop
async def test_https_with_a_self_signed_certificate(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    cert, key = make_self_signed(tmp_path)
    srv = await start_server(small_cfg(cert=str(cert), key=str(key)))
    client_ctx = ssl.create_default_context(cafile=str(cert))
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        async with http.get(srv.base_url + "/api/cameras", ssl=client_ctx) as resp:
            assert resp.status == 401
        async with http.get(srv.url, ssl=client_ctx) as resp:
            assert resp.status == 200 and "<title>facestream</title>" in await resp.text()
        with pytest.raises(aiohttp.ClientError):
            async with http.get(srv.url.replace("https://", "http://")) as resp:
                await resp.read()
        frames: list[int] = []
        viewer = await connect_viewer(
            srv.base_url,
            srv.token,
            "cam1",
            lambda k, f, t: frames.append(f.width),
            tracks=("original",),
            ssl_context=client_ctx,
        )
        try:
            for _ in range(300):
                if len(frames) >= 3:
                    break
                await asyncio.sleep(0.1)
        finally:
            await viewer.close()
        assert frames[:3] == [640, 640, 640]
    finally:
        await srv.stop()
    with pytest.raises(ConfigError, match="TLS"):
        await start_server(small_cfg(cert=str(tmp_path / "missing.pem"), key=str(key)))


@module_loop
async def test_port_in_use_is_a_clear_error(server: RunningServer) -> None:
    port = int(server.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match="cannot listen"):
        await start_server(small_cfg(port=port))


def test_stamp_round_trip_and_rejects_noise() -> None:
    rng = np.random.default_rng(0)
    for index in (0, 1, 12345, (1 << 24) - 1):
        image = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
        draw_stamp(image, index)
        assert read_stamp(image) == index
        assert read_stamp(image[..., 1]) == index
    assert read_stamp(np.full((360, 640), 128, np.uint8)) is None
    assert read_stamp(rng.integers(0, 255, (360, 640), dtype=np.uint8)) is None
    image = np.zeros((360, 640, 3), np.uint8)
    draw_stamp(image, 777)
    image[:8, 40:48] = 255 - image[:8, 40:48]  # one flipped data bit: the check bits catch it
    assert read_stamp(image) is None
    with pytest.raises(ValueError, match="too small"):
        draw_stamp(np.zeros((8, 100, 3), np.uint8), 1)
    log = LatencyLog(capacity=2)
    for i in range(3):
        log.mark(i, {"capture": float(i)})
    log.mark(2, {"capture": 99.0}, first_only=True)
    assert log.get(0) == {} and log.get(2) == {"capture": 2.0}


def test_bitrate_setting_lifts_aiortc_caps() -> None:
    try:
        signaling.set_video_bitrate(5000)
        assert vpx.MAX_BITRATE == vpx.DEFAULT_BITRATE == 5_000_000
        assert h264.MAX_BITRATE == 5_000_000
        encoder = Vp8Encoder()
        assert encoder.target_bitrate == 5_000_000
        encoder.target_bitrate = 20_000_000  # what a generous REMB would ask for: capped at the setting
        assert encoder.target_bitrate == 5_000_000
        encoder.target_bitrate = 100_000  # a pessimistic REMB lowers it, down to aiortc's floor
        assert encoder.target_bitrate == vpx.MIN_BITRATE == 250_000
        signaling.set_video_bitrate(2000, pinned=True)
        pinned = Vp8Encoder()
        pinned.target_bitrate = 100_000
        assert pinned.target_bitrate == 2_000_000
        signaling.set_video_bitrate(None)
        assert (vpx.MIN_BITRATE, vpx.DEFAULT_BITRATE, vpx.MAX_BITRATE) == (250_000, 500_000, 1_500_000)
        assert h264.MAX_BITRATE == 3_000_000
    finally:
        signaling.set_video_bitrate(None)


def test_loopback_candidate_only_when_no_other_ipv4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signaling, "_stock_get_host_addresses", lambda v4, v6: [])
    assert signaling._host_addresses_with_loopback(True, True) == ["127.0.0.1"]
    monkeypatch.setattr(signaling, "_stock_get_host_addresses", lambda v4, v6: ["192.0.2.7", "fe80::1"])
    assert signaling._host_addresses_with_loopback(True, True) == ["192.0.2.7", "fe80::1"]
    assert signaling._host_addresses_with_loopback(False, True) == ["192.0.2.7", "fe80::1"]


def test_server_config_validation() -> None:
    with pytest.raises(ConfigError, match="stun"):
        validate(small_cfg(stun_servers=("http://example.org",)))
    with pytest.raises(ConfigError, match="cert and key"):
        validate(small_cfg(cert="a.pem"))
    assert validate(small_cfg(stun_servers=("stun:stun.example.org:3478",))).server.stun_servers


def test_cli_serve_prints_one_url_line_and_stops_cleanly() -> None:
    """`python run.py serve` end to end: one stdout line with the tokened URL, a working page,
    exit code 0 on Ctrl-C and nothing more on stdout."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "run.py", "serve", "--port", "0", "--engine", "bicubic"]
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("facestream: open http://127.0.0.1:") and "/?token=" in line, line
        url = line.split("open ", 1)[1]
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and b"<title>facestream</title>" in resp.read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url.split("?")[0], timeout=30)
        assert err.value.code == 401
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.strip() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@module_loop
async def test_stopping_closes_open_dashboards(http: aiohttp.ClientSession) -> None:
    """An open dashboard must not hold up shutdown: its WebSocket is closed as 'going away'."""
    srv = await start_server(small_cfg())
    stopped = False
    try:
        async with http.ws_connect(f"{srv.base_url}/api/ws?token={srv.token}") as ws:
            assert (await asyncio.wait_for(ws.receive_json(), 20))["type"] == "hello"
            stopping = asyncio.ensure_future(srv.stop())
            while True:
                msg = await asyncio.wait_for(ws.receive(), 20)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
            assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
            await asyncio.wait_for(stopping, 30)
            stopped = True
    finally:
        if not stopped:
            await srv.stop()
