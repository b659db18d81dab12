"""Which tracks a viewer is sent (POST /api/cameras/{name}/watch): a real server on the demo
source, real shared VP8 encoders, aiortc viewers on loopback. The dashboard's use of it is in
test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from test_webrtc import Received

from devtools.viewer import Viewer, connect_viewer
from streamer.config import AppConfig, EnhanceConfig, OutputConfig, ServerConfig, SourceConfig
from streamer.server import RunningServer, start_server
from streamer.server.camera import WATCHED_S

module_loop = pytest.mark.asyncio(loop_scope="module")


def watch_cfg(**server: object) -> AppConfig:
    return AppConfig(
        sources=(SourceConfig(uri="demo", name="door", demo_width=320, demo_height=180, demo_fps=15.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=1),
        server=ServerConfig(port=0, stamp_frames=True, **server),  # type: ignore[arg-type]
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[RunningServer]:
    srv = await start_server(watch_cfg())
    yield srv
    await srv.stop()


async def until(condition: object, timeout: float) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def post_watch(srv: RunningServer, body: object, camera: str = "door", token: str | None = None) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{srv.base_url}/api/cameras/{camera}/watch",
            json=body,
            headers={"Authorization": f"Bearer {srv.token if token is None else token}"},
        ) as resp,
    ):
        return resp.status


async def viewer(srv: RunningServer, got: Received) -> Viewer:
    v = await connect_viewer(srv.base_url, srv.token, "door", got)
    await got.wait(("enhanced", "original"), 5, 30)
    return v


@module_loop
async def test_a_track_nobody_shows_is_not_encoded_and_comes_back_on_request(server: RunningServer) -> None:
    tracks, camera = server.state.tracks["door"], server.state.cameras["door"]
    a, b = Received(), Received()
    va, vb = await viewer(server, a), await viewer(server, b)
    try:
        assert va.peer and vb.peer and va.peer != vb.peer
        assert await post_watch(server, {"peer": va.peer, "tracks": ["enhanced"]}) == 200
        await asyncio.sleep(0.5)
        assert tracks.encoding("original")  # b still shows it
        assert await post_watch(server, {"peer": vb.peer, "tracks": ["enhanced"]}) == 200
        await until(lambda: not tracks.encoding("original"), 5)
        assert tracks.encoding("enhanced")
        await asyncio.sleep(0.5)  # what was already sent arrives
        paused = len(a.frames["original"]), len(b.frames["original"])
        enhanced = len(a.frames["enhanced"])
        await until(lambda: not camera.watched("original"), WATCHED_S + 2)  # no more conversions
        assert (len(a.frames["original"]), len(b.frames["original"])) <= (paused[0] + 1, paused[1] + 1)
        assert len(a.frames["enhanced"]) > enhanced + 5

        assert await post_watch(server, {"peer": va.peer, "tracks": ["enhanced", "original"]}) == 200
        await a.wait(("original",), paused[0] + 10, 20)  # restarted on a keyframe, so it decodes
        assert tracks.encoding("original") and camera.watched("original")
        assert len(b.frames["original"]) <= paused[1] + 1  # b did not ask for it back
        assert all(s is not None for _, _, s in a.frames["original"][-5:])  # whole pictures again
    finally:
        await va.close()
        await vb.close()


@module_loop
async def test_watch_checks_what_it_is_sent(server: RunningServer) -> None:
    got = Received()
    v = await viewer(server, got)
    try:
        assert await post_watch(server, {"peer": v.peer, "tracks": ["enhanced"]}, token="wrong") == 401
        assert await post_watch(server, {"peer": "guess", "tracks": ["enhanced"]}) == 404
        assert await post_watch(server, {"peer": v.peer, "tracks": []}, camera="nope") == 404
        assert await post_watch(server, {"peer": v.peer, "tracks": ["sideways"]}) == 400
        assert await post_watch(server, {"peer": v.peer, "tracks": "enhanced"}) == 400
        assert await post_watch(server, {"peer": v.peer, "tracks": ["original", "original"]}) == 400
        assert await post_watch(server, {"peer": 7, "tracks": []}) == 404
        assert await post_watch(server, ["peer"]) == 400
        assert await post_watch(server, {"peer": v.peer, "tracks": []}) == 200  # a hidden tab: nothing
    finally:
        await v.close()
    await until(lambda: not server.state.peer_ids, 10)  # a closed peer's id is forgotten


@pytest.mark.asyncio
async def test_choosing_tracks_needs_the_shared_encoder() -> None:
    srv = await start_server(watch_cfg(shared_encoder=False))
    try:
        got = Received()
        v = await viewer(srv, got)
        try:
            assert await post_watch(srv, {"peer": v.peer, "tracks": ["enhanced"]}) == 409
        finally:
            await v.close()
    finally:
        await srv.stop()
