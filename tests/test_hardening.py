"""Issue 13's findings, each against a real server on loopback: what made it answer 500, what kept
its health figures from telling the truth, and what let a client hold it or aim it elsewhere.

Raw sockets stand in for clients that do what aiohttp's client will not (non-UTF-8 headers,
slowloris), real aiortc offers for the signaling cases, a real UDP socket for where ICE checks go.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiortc import RTCPeerConnection
from test_server import bearer, small_cfg

from devtools.viewer import connect_viewer
from streamer.config import AppConfig, ConfigError, EnhanceConfig, ServerConfig, SourceConfig, validate
from streamer.server import RunningServer, start_server
from streamer.server import app as app_module
from streamer.server.signaling import PeerCaps, PeerLimitError

module_loop = pytest.mark.asyncio(loop_scope="module")
TOKEN = "hardening-token"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[RunningServer]:
    srv = await start_server(small_cfg(token=TOKEN))
    yield srv
    await srv.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def offer_sdp() -> str:
    """A real aiortc offer for two recvonly video tracks (what connect_viewer and the page send)."""
    pc = RTCPeerConnection()
    for _ in range(2):
        pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def port_of(srv: RunningServer) -> int:
    return int(srv.base_url.rsplit(":", 1)[1])


async def raw_http(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send bytes no HTTP client library would send; read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def internal_text(body: str) -> bool:
    """What an exception's text looks like in a response body."""
    return any(s in body for s in ("Error", "object has no attribute", "Traceback", "NoneType", "unhashable"))


# -- 1-4: no 500s ------------------------------------------------------------------------------
@module_loop
async def test_a_non_utf8_token_is_a_401_with_the_hardening_headers(server: RunningServer) -> None:
    port = port_of(server)
    for request in (
        b"GET /api/cameras HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /api/cameras?token=%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xc3\r\nConnection: close\r\n\r\n",
    ):
        status, headers, _ = await raw_http(port, request)
        assert status == 401, request
        assert "default-src 'none'" in headers.get("Content-Security-Policy", ""), request


@module_loop
async def test_codec_and_tracks_of_the_wrong_type_are_a_400(
    server: RunningServer, http: aiohttp.ClientSession, offer_sdp: str
) -> None:
    url = server.base_url + "/api/cameras/cam1/offer"
    bodies = [
        {"sdp": offer_sdp, "type": "offer", "codec": ["vp8"]},
        {"sdp": offer_sdp, "type": "offer", "codec": {"vp8": 1}},
        {"sdp": offer_sdp, "type": "offer", "tracks": [["enhanced"]]},
        {"sdp": offer_sdp, "type": "offer", "tracks": [{"a": 1}, "original"]},
        {"sdp": offer_sdp, "type": ["offer"]},
        {"sdp": offer_sdp, "type": "offer", "codec": "x" * 100_000},
    ]
    for body in bodies:
        async with http.post(url, headers=bearer(TOKEN), json=body) as resp:
            text = await resp.text()
            assert resp.status == 400, (body.get("codec"), body.get("tracks"))
            assert text.startswith("400:") and not internal_text(text) and len(text) < 300, text[:300]
    assert server.state.caps.total == 0 and not server.state.peers


@module_loop
async def test_an_offer_whose_first_m_line_is_of_an_unknown_kind_is_a_400(
    server: RunningServer, http: aiohttp.ClientSession, offer_sdp: str
) -> None:
    url = server.base_url + "/api/cameras/cam1/offer"
    mid0 = offer_sdp.split("a=group:BUNDLE ", 1)[1].split()[0]
    sdps = [
        re.sub(r"m=video [^\r]*", "m=image 9 UDPTL t38", offer_sdp, count=1),
        offer_sdp.replace("m=video", "m=text", 1),
        offer_sdp.replace("m=video", "m=VIDEO", 1),
        offer_sdp.replace(f"a=group:BUNDLE {mid0}", "a=group:BUNDLE nosuchmid", 1),
    ]
    for sdp in sdps:
        async with http.post(url, headers=bearer(TOKEN), json={"sdp": sdp, "type": "offer"}) as resp:
            text = await resp.text()
            assert resp.status == 400, text
            assert not internal_text(text), text
    assert server.state.caps.total == 0 and not server.state.peers and len(server.state.pending) == 0


@module_loop
async def test_deeply_nested_json_is_a_400(server: RunningServer, http: aiohttp.ClientSession) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    for route in ("offer", "controls"):
        url = f"{server.base_url}/api/cameras/cam1/{route}"
        async with http.post(url, headers=bearer(TOKEN), data=nested) as resp:
            assert resp.status == 400, route
            assert await resp.text() == "400: body must be JSON"


@module_loop
async def test_aiortc_failures_get_a_400_without_their_exception_text(
    server: RunningServer, http: aiohttp.ClientSession, offer_sdp: str
) -> None:
    """Offers that get past parse_offer but that aiortc refuses: the reason goes to the log only."""
    url = server.base_url + "/api/cameras/cam1/offer"
    lines = offer_sdp.split("\r\n")
    sdps = [
        "\r\n".join(line for line in lines if not line.startswith("a=fingerprint")),
        "\r\n".join(line for line in lines if not line.startswith("a=ice-ufrag")),
        offer_sdp.replace("a=setup:actpass", "a=setup:sideways"),
        offer_sdp.replace("a=rtpmap:97 VP8/90000", "a=rtpmap:97 VP8/1"),
        offer_sdp.replace("a=mid:", "a=candidate:1 1 udp 1 ", 1),
    ]
    for sdp in sdps:
        async with http.post(url, headers=bearer(TOKEN), json={"sdp": sdp, "type": "offer"}) as resp:
            text = await resp.text()
            assert resp.status in (200, 400), text
            assert not internal_text(text), text
    for pc in list(server.state.peers):
        await server.state.close_peer(pc)


@module_loop
async def test_an_unexpected_exception_is_a_logged_generic_500_with_the_headers(
    server: RunningServer,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("internal detail: /etc/facestream/secret.toml")

    monkeypatch.setattr(app_module, "parse_offer", broken)
    async with http.post(server.base_url + "/api/cameras/cam1/offer", headers=bearer(TOKEN), json={}) as resp:
        text = await resp.text()
        assert resp.status == 500
        assert "secret" not in text and text.startswith("500:")
        assert resp.headers["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in resp.headers
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "secret.toml" in str(logged[0].exc_info[1])


# -- 5, 6: controls ----------------------------------------------------------------------------
@module_loop
async def test_back_to_back_controls_both_apply(server: RunningServer, http: aiohttp.ClientSession) -> None:
    """{"scale"} then {"mode"} sent before a frame applies: the second builds on the first."""
    url = server.base_url + "/api/cameras/cam1/controls"
    camera = server.state.cameras["cam1"]
    assert await wait_until(lambda: camera.processor is not None, 30)
    start = camera.processor.controls  # type: ignore[union-attr]
    scale = 4 if start["scale"] != 4 else 16
    mode = "gallery" if start["mode"] != "gallery" else "inset"
    for trial in range(5):
        async with http.post(url, headers=bearer(TOKEN), json={"scale": scale}) as first:
            assert first.status == 200
        async with http.post(url, headers=bearer(TOKEN), json={"mode": mode}) as second:
            assert second.status == 200
            pending = (await second.json())["controls"]
        assert (pending["scale"], pending["mode"]) == (scale, mode), f"trial {trial}: the answer shows both"
        assert await wait_until(lambda want=mode: camera.processor.controls["mode"] == want, 20)  # type: ignore[misc,union-attr]
        assert camera.processor.controls["scale"] == scale, f"trial {trial}: the scale change was lost"  # type: ignore[union-attr]
        scale, mode = start["scale"], start["mode"]


@module_loop
async def test_controls_have_server_side_ranges_and_bounded_logs(
    server: RunningServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.base_url + "/api/cameras/cam1/controls"
    huge = "1" + "0" * 1000
    for raw in (f'{{"detect_interval": {huge}}}', '{"detect_interval": 31}', '{"detect_interval": 0}'):
        async with http.post(
            url, headers={**bearer(TOKEN), "Content-Type": "application/json"}, data=raw
        ) as r:
            text = await r.text()
            assert r.status == 400, raw[:40]
            assert len(text) < 300 and huge not in text
    assert all(huge not in r.getMessage() for r in caplog.records), "a 1,001-digit value reached the log"
    camera = server.state.cameras["cam1"]
    assert camera.processor is not None and 1 <= int(camera.processor.controls["detect_interval"]) <= 30


# -- 7: health that tells the truth ------------------------------------------------------------
def test_fps_decays_to_zero_once_frames_stop() -> None:
    from streamer.server.camera import recent_fps

    times = [i / 15 for i in range(60)]  # 15 fps for 4 s
    last = times[-1]
    assert recent_fps(times, last) == pytest.approx(15.0)
    assert recent_fps(times, last + 1 / 30) == pytest.approx(15.0)  # within one gap: no decay yet
    decayed = [recent_fps(times, last + s) for s in (0.5, 1.0, 2.0, 3.0, 4.0)]
    assert all(a > b for a, b in zip(decayed, decayed[1:], strict=False)) and decayed[0] < 15.0
    assert recent_fps(times, last + 5.1) == 0.0
    assert recent_fps([], 0.0) == 0.0 and recent_fps([1.0], 1.0) == 0.0


def metric(text: str, name: str, camera: str) -> float:
    prefix = f'{name}{{camera="{camera}"}} '
    return float(next(line for line in text.splitlines() if line.startswith(prefix)).split()[-1])


async def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return False


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_cameras(uri: str, **server: object) -> AppConfig:
    live = SourceConfig(uri="demo", name="hall", demo_width=320, demo_height=180, demo_fps=15.0)
    door = SourceConfig(
        uri=uri,
        name="door",
        retry_at_start=True,
        open_timeout_s=1.0,
        reconnect_initial_s=0.2,
        reconnect_max_s=0.5,
    )
    return AppConfig(
        sources=(live, door),
        enhance=EnhanceConfig(engine="bicubic"),
        server=ServerConfig(port=0, token=TOKEN, **server),  # type: ignore[arg-type]
    )


@module_loop
async def test_a_camera_that_cannot_connect_is_down_on_every_health_surface(
    http: aiohttp.ClientSession,
) -> None:
    srv = await start_server(two_cameras(f"rtsp://admin:hunter2@127.0.0.1:{closed_port()}/live"))
    started = time.monotonic()
    info: dict[str, dict[str, Any]] = {}

    async def reported() -> bool:
        async with http.get(srv.base_url + "/api/cameras", headers=bearer(TOKEN)) as resp:
            info.update({c["name"]: c for c in (await resp.json())["cameras"]})
        # A refused port fails fast: also give the down camera's frame age time to pass 1 s.
        old_enough = time.monotonic() - started > 1.5
        return info["door"].get("attempt", 0) >= 2 and info["hall"]["fps"] > 0 and old_enough

    try:
        deadline = time.monotonic() + 30
        while not await reported() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert info["door"]["status"] == "connecting" and info["door"]["up"] is False, info
        assert info["door"]["attempt"] >= 2 and "cannot open" in info["door"]["last_error"]
        assert "hunter2" not in info["door"]["last_error"], "camera credentials stay on the server"
        assert info["door"]["fps"] == 0.0 and info["hall"]["status"] == "live"
        async with http.get(srv.base_url + "/healthz") as resp:
            assert resp.status == 503 and await resp.json() == {"status": "degraded"}
        async with http.get(srv.base_url + "/healthz", headers=bearer(TOKEN)) as resp:
            body = await resp.json()
        assert body["status"] == "degraded" and [c["name"] for c in body["down"]] == ["door"]
        async with http.get(srv.base_url + "/metrics", headers=bearer(TOKEN)) as resp:
            text = await resp.text()
        assert metric(text, "facestream_camera_up", "door") == 0.0
        assert metric(text, "facestream_camera_up", "hall") == 1.0
        door_age = metric(text, "facestream_camera_last_frame_age_seconds", "door")
        assert door_age >= 1.0 and metric(text, "facestream_camera_last_frame_age_seconds", "hall") < door_age
        async with http.ws_connect(f"{srv.base_url}/api/ws?token={TOKEN}") as ws:
            while True:
                msg = await asyncio.wait_for(ws.receive_json(), 10)
                if msg["type"] == "status":
                    break
        shown = {c["name"]: c for c in msg["cameras"]}
        assert shown["door"]["status"] == "connecting" and shown["door"]["attempt"] >= 2
    finally:
        await srv.stop()
    door = srv.state.cameras["door"]
    assert door.status.state == "stopped" and not door.status.up


# -- 8: offers that never connect --------------------------------------------------------------
def test_pending_offers_displace_the_oldest_and_caps_count_pending_per_client() -> None:
    from streamer.server.signaling import PendingOffers

    pending = PendingOffers(2)
    assert pending.add("a", "10.0.0.1") is None and pending.add("b", "10.0.0.1") is None
    assert pending.add("c", "10.0.0.2") == "a" and len(pending) == 2 and "a" not in pending
    assert (
        pending.count("10.0.0.1") == 1 and pending.remove("b") == "10.0.0.1" and pending.remove("b") is None
    )
    caps = PeerCaps(max_total=2, max_per_client=2)
    caps.acquire("10.0.0.1")
    with pytest.raises(PeerLimitError) as err:
        caps.check("10.0.0.1", pending=1)
    assert err.value.status == 429
    caps.acquire("10.0.0.2")
    with pytest.raises(PeerLimitError) as err:
        caps.check("10.0.0.3")
    assert err.value.status == 503


@module_loop
async def test_offers_that_never_connect_cannot_lock_a_viewer_out(offer_sdp: str) -> None:
    srv = await start_server(small_cfg(token=TOKEN, pending_timeout_s=3.0))
    statuses = []
    try:
        for i in range(16):  # what the hostile run sent: 16 offers from 4 loopback addresses
            connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{2 + i % 4}", 0))
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.post(
                    srv.base_url + "/api/cameras/cam1/offer",
                    headers=bearer(TOKEN),
                    json={"sdp": offer_sdp, "type": "offer"},
                ) as resp,
            ):
                statuses.append(resp.status)
        assert statuses == [200] * 16
        frames: list[int] = []
        viewer = await connect_viewer(
            srv.base_url, TOKEN, "cam1", lambda k, f, t: frames.append(f.width), tracks=("original",)
        )
        try:
            assert await wait_until(lambda: frames, 30)
        finally:
            await viewer.close()
        assert srv.state.metrics.rejected.labels("pending_evicted")._value.get() >= 8
        assert await wait_until(lambda: len(srv.state.pending) == 0, 6), "pending offers end on their clock"
    finally:
        await srv.stop()


# -- 9: where ICE checks may go ----------------------------------------------------------------
def test_default_candidate_policy_is_own_networks_and_private_ranges() -> None:
    from streamer.server.signaling import CandidatePolicy, interface_networks

    policy = CandidatePolicy.from_config(())
    own = interface_networks()
    assert own and all(any(n.network_address == m.network_address for m in policy.networks) for n in own)
    for private in ("10.1.2.3", "172.20.0.5", "192.168.1.10", "fd12::1", "fe80::1"):
        assert policy.allows(private), private
    for public in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"):
        assert policy.allows(public) == any(ipaddress.ip_address(public) in n for n in own), public
    assert policy.allows("0f3c2a1e-8b7d-4e2a-9c1b-2d3e4f5a6b7c.local")
    assert not policy.allows("victim.example.com") and not policy.allows("a.b.local")
    assert not CandidatePolicy.from_config(("10.0.0.0/8",)).allows("127.0.0.1")
    with pytest.raises(ConfigError, match="ice_networks"):
        validate(small_cfg(ice_networks=("not-a-net",)))


async def stun_packets_to(port_sock: socket.socket, srv: RunningServer, sdp: str, seconds: float) -> int:
    """Post `sdp` and count the UDP datagrams that reach `port_sock` within `seconds`."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            srv.base_url + "/api/cameras/cam1/offer",
            headers=bearer(TOKEN),
            json={"sdp": sdp, "type": "offer"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
    loop = asyncio.get_running_loop()
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(loop.sock_recv(port_sock, 2048), max(0.05, deadline - time.monotonic()))
            count += 1
        except TimeoutError:
            break
    return count


@module_loop
async def test_ice_checks_go_only_to_candidates_inside_the_policy(offer_sdp: str) -> None:
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", 0))
    target.setblocking(False)
    line = f"a=candidate:9 1 udp 2130706431 127.0.0.1 {target.getsockname()[1]} typ host\r\n"
    sdp = offer_sdp.replace("a=mid:", line + "a=mid:")
    from streamer.server.signaling import CandidatePolicy

    # The default admits loopback only on a machine whose ICE agent has nothing else to listen on.
    default_admits_loopback = CandidatePolicy.from_config(()).allows("127.0.0.1")
    cases = ((("127.0.0.0/8",), True), (("10.0.0.0/8",), False), ((), default_admits_loopback))
    try:
        for networks, expect_packets in cases:
            srv = await start_server(small_cfg(token=TOKEN, ice_networks=networks))
            try:
                packets = await stun_packets_to(target, srv, sdp, 4.0)
            finally:
                await srv.stop()
            assert (packets > 0) == expect_packets, (networks, packets)
    finally:
        target.close()


# -- 10: slow clients --------------------------------------------------------------------------
@module_loop
async def test_slowloris_and_idle_connections_are_closed() -> None:
    srv = await start_server(small_cfg(token=TOKEN, idle_timeout_s=1.5, body_timeout_s=1.5))
    port = port_of(srv)
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
    try:
        started = time.monotonic()
        for _, writer in streams:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        closed_at: dict[int, float] = {}
        while len(closed_at) < len(streams) and time.monotonic() - started < 6.0:
            for i, (reader, writer) in enumerate(streams):
                if i in closed_at:
                    continue
                if reader.at_eof() or writer.is_closing():
                    closed_at[i] = time.monotonic() - started
                    continue
                writer.write(b"X-a: b\r\n")  # one more header line every 0.2 s, never the blank line
            await asyncio.sleep(0.2)
            for i, (reader, _) in enumerate(streams):
                if i not in closed_at:
                    try:
                        await asyncio.wait_for(reader.read(1024), 0.01)
                    except TimeoutError:
                        pass
        assert len(closed_at) == len(streams), f"{len(closed_at)} of {len(streams)} closed within 6 s"
        assert max(closed_at.values()) < 5.0

        # An idle keep-alive connection after a complete request is closed on the same clock.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert first.startswith(b"HTTP/1.1 ")
        t0 = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 5)  # returns at EOF: the server closed it
        assert time.monotonic() - t0 < 3.0 and b"HTTP/1.1" not in rest[rest.find(b"}") + 1 :]
        writer.close()

        # A body that trickles in gets a 408 instead of holding the handler.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /api/cameras/cam1/controls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
        )
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        writer.close()

        # An open metadata WebSocket is not an idle connection: it outlives the idle timeout.
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{srv.base_url}/api/ws?token={TOKEN}") as ws,
        ):
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3.0:
                msg = await asyncio.wait_for(ws.receive(), 5)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
    finally:
        for _, writer in streams:
            writer.close()
        await srv.stop()


# -- 11: WebSocket origin and CSP --------------------------------------------------------------
def test_own_origins_follow_the_configured_host() -> None:
    from streamer.server.auth import Origins

    wildcard = Origins("0.0.0.0", "http", (), lambda: ["192.0.2.2", "fd00::2"])
    wildcard.bind(8080)
    for origin in (
        "http://192.0.2.2:8080",
        "http://[fd00::2]:8080",
        "http://localhost:8080",
        "HTTP://LOCALHOST:8080",
    ):
        assert wildcard.allows(origin), origin
    for origin in (
        "http://192.0.2.3:8080",
        "https://192.0.2.2:8080",
        "http://192.0.2.2",
        "null",
        "",
        "http://",
    ):
        assert not wildcard.allows(origin), origin
    assert "ws://[fd00::2]:8080" in wildcard.csp
    lan = Origins("192.0.2.2", "https", ("https://cams.example.org",), lambda: [])
    lan.bind(443)
    assert lan.allows("https://192.0.2.2") and lan.allows("https://cams.example.org:443")
    assert not lan.allows("https://localhost") and not lan.allows("http://cams.example.org")


@module_loop
async def test_websocket_origin_is_checked_and_csp_ignores_the_host_header(
    http: aiohttp.ClientSession,
) -> None:
    srv = await start_server(small_cfg(token=TOKEN, ws_origins=("https://cams.example.org",)))
    url = f"{srv.base_url}/api/ws?token={TOKEN}"
    try:
        for origin in (
            "http://evil.example",
            "null",
            f"http://127.0.0.1:{port_of(srv) + 1}",
            "https://127.0.0.1",
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                async with http.ws_connect(url, headers={"Origin": origin}):
                    pass
            assert err.value.status == 403, origin
        for headers in ({"Origin": srv.base_url}, {"Origin": "https://cams.example.org"}, {}):
            async with http.ws_connect(url, headers=headers) as ws:
                assert (await asyncio.wait_for(ws.receive_json(), 20))["type"] == "hello"
        forged = (
            f"GET /?token={TOKEN} HTTP/1.1\r\nHost: evil.example; script-src *\r\nConnection: close\r\n\r\n"
        )
        status, headers, _ = await raw_http(port_of(srv), forged.encode())
        csp = headers["Content-Security-Policy"]
        assert status == 200 and "evil" not in csp and "script-src *" not in csp
        assert f"ws://127.0.0.1:{port_of(srv)}" in csp and "wss://cams.example.org" in csp
    finally:
        await srv.stop()
    with pytest.raises(ConfigError, match="ws_origins"):
        validate(small_cfg(ws_origins=("cams.example.org/path",)))


# -- 12: client errors do not flood the log ----------------------------------------------------
@module_loop
async def test_over_long_headers_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamer.server.clients")
    srv = await start_server(small_cfg(token=TOKEN))
    try:
        caplog.clear()
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n"
        for _ in range(20):
            status, _, _ = await raw_http(port_of(srv), request)
            assert status == 400
        for _ in range(20):
            status, _, _ = await raw_http(
                port_of(srv), b"GET /api/cameras HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status == 401
    finally:
        await srv.stop()
    protocol = [r for r in caplog.records if "Error handling request" in r.getMessage()]
    refused = [r for r in caplog.records if "without a valid token" in r.getMessage()]
    assert len(protocol) == 1 and protocol[0].levelno == logging.WARNING and protocol[0].exc_info is None
    assert "400" in protocol[0].getMessage() and len(protocol[0].getMessage()) < 400
    assert len(refused) == 1


def test_throttled_log_says_how_many_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    from streamer.server.log_throttle import ThrottledLog

    now = [0.0]
    throttled = ThrottledLog(logging.getLogger("test.throttle"), interval_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.throttle"):
        for i in range(5):
            throttled.info("bad thing from %s", f"10.0.0.{i}")
        throttled.info("another thing")
        now[0] = 61.0
        throttled.info("bad thing from %s", "10.0.0.9")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "bad thing from 10.0.0.0",
        "another thing",
        "bad thing from 10.0.0.9 (4 more like this in the last 60 s not logged)",
    ]


@pytest.mark.rtsp
@module_loop
async def test_a_killed_rtsp_camera_goes_down_and_comes_back(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    from test_rtsp import RtspServer, _free_port, _gst_rtsp_available

    if not _gst_rtsp_available():
        pytest.skip("needs /usr/bin/python3 with gi + GstRtspServer (see test_rtsp.py)")
    rtsp = RtspServer(_free_port(), tmp_path / "rtsp.log")
    rtsp.start()
    srv = await start_server(two_cameras(rtsp.url))

    async def door_when(condition: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """/api/cameras' entry for the door camera once `condition` holds (or the last one seen)."""
        deadline = time.monotonic() + timeout
        while True:
            async with http.get(srv.base_url + "/api/cameras", headers=bearer(TOKEN)) as resp:
                door = next(c for c in (await resp.json())["cameras"] if c["name"] == "door")
            if condition(door) or time.monotonic() > deadline:
                return door
            await asyncio.sleep(0.2)

    try:
        door = await door_when(lambda d: d["fps"] > 5, 30)
        assert door["fps"] > 5, door
        rtsp.kill()
        door = await door_when(lambda d: d["status"] == "reconnecting" and d["attempt"] >= 2, 20)
        assert door["status"] == "reconnecting" and door["attempt"] >= 2 and door["last_error"], door
        door = await door_when(lambda d: d["fps"] == 0.0, 8.0)  # FPS_WINDOW_S + 3 s
        assert door["fps"] == 0.0 and door["up"] is False, door
        async with http.get(srv.base_url + "/healthz", headers=bearer(TOKEN)) as resp:
            body = await resp.json()
        assert resp.status == 503 and body["down"][0]["name"] == "door"
        assert body["down"][0]["status"] == "reconnecting" and body["down"][0]["attempt"] >= 2
        async with http.get(srv.base_url + "/metrics", headers=bearer(TOKEN)) as resp:
            text = await resp.text()
        assert metric(text, "facestream_camera_up", "door") == 0.0
        assert metric(text, "facestream_camera_fps", "door") == 0.0
        assert metric(text, "facestream_camera_last_frame_age_seconds", "door") >= 1.0
        rtsp.start()
        door = await door_when(lambda d: d["status"] == "live" and d["fps"] > 0, 30)
        assert door["status"] == "live" and door["attempt"] == 0 and door["last_error"] is None, door
        async with http.get(srv.base_url + "/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
    finally:
        await srv.stop()
        rtsp.kill()


@module_loop
async def test_an_offer_without_dtls_fingerprint_or_ice_credentials_is_a_400(
    server: RunningServer, http: aiohttp.ClientSession, offer_sdp: str, caplog: pytest.LogCaptureFixture
) -> None:
    """aiortc answers such an offer, then fails inside its own connect task (an exception no one
    collects): refused before aiortc sees it."""
    url = server.base_url + "/api/cameras/cam1/offer"
    for drop in ("a=fingerprint:", "a=ice-pwd:"):
        sdp = "\r\n".join(line for line in offer_sdp.splitlines() if not line.startswith(drop)) + "\r\n"
        async with http.post(url, headers=bearer(TOKEN), json={"sdp": sdp, "type": "offer"}) as resp:
            assert resp.status == 400, drop
            assert drop.removeprefix("a=").rstrip(":") in await resp.text()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
