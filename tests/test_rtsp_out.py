"""`--rtsp-out`: the enhanced stream read back by PyAV (FFmpeg's RTSP client) from the real
gst-rtsp-server child, fed by the camera's shared H.264 encoder; readers leave and come back; the
child is killed and comes back by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import aiohttp
import av
import pytest
import pytest_asyncio
from test_rtsp import _free_port, _gst_rtsp_available

from streamer.config import AppConfig, ConfigError, EnhanceConfig, OutputConfig, ServerConfig, SourceConfig
from streamer.server import RunningServer, start_server
from streamer.server.rtsp_out import RtspFeed

module_loop = pytest.mark.asyncio(loop_scope="module")
pytestmark = [
    pytest.mark.rtsp,
    pytest.mark.skipif(not _gst_rtsp_available(), reason="needs /usr/bin/python3 with gi + GstRtspServer"),
]


def rtsp_cfg(port: int) -> AppConfig:
    return AppConfig(
        sources=(SourceConfig(uri="demo", name="door", demo_width=640, demo_height=360, demo_fps=15.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=2),
        server=ServerConfig(port=0, rtsp_out=port, keyframe_interval_s=30.0),
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[RunningServer]:
    srv = await start_server(rtsp_cfg(_free_port()))
    yield srv
    await srv.stop()


def url(srv: RunningServer, password: str | None = None) -> str:
    port = srv.state.cfg.server.rtsp_out
    return f"rtsp://facestream:{password or srv.token}@127.0.0.1:{port}/door"


Decoded = list[tuple[int, int, int | None, float]]


def read(address: str, transport: str, n: int) -> tuple[Decoded, float]:
    """n decoded frames (width, height, pts, time decoded) and the seconds from opening to the
    first one."""
    started = time.monotonic()
    frames: Decoded = []
    with av.open(
        address, options={"rtsp_transport": transport, "analyzeduration": "500000"}, timeout=15
    ) as container:
        for frame in container.decode(video=0):
            frames.append((frame.width, frame.height, frame.pts, time.monotonic()))
            if len(frames) >= n:
                break
    return frames, frames[0][3] - started


def feed(srv: RunningServer) -> RtspFeed:
    assert srv.state.rtsp is not None
    (only,) = srv.state.rtsp.feeds
    return only


async def until(condition: object, timeout: float) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


@module_loop
async def test_rtsp_reader_gets_the_enhanced_stream_and_can_come_back(server: RunningServer) -> None:
    reading = asyncio.ensure_future(asyncio.to_thread(read, url(server), "tcp", 30))
    await until(lambda: feed(server).readers == 1, 30)
    encoder = server.state.tracks["door"].encoders[("enhanced", "h264", "full")]
    assert feed(server).encoder is encoder and encoder.sinks == 1, "the shared encoder, no encode of its own"
    first, _ = await reading
    await until(lambda: feed(server).readers == 0 and not encoder.running, 30)
    assert server.state.cameras["door"].viewers == 0, "no reader, no frames prepared"

    # Back again (over UDP this time), with the encoder's 30 s keyframe floor: only the keyframe
    # asked for on arrival lets it start.
    keyframes = encoder.keyframes
    again, waited = await asyncio.to_thread(read, url(server), "udp", 30)
    for frames in (first, again):
        assert len(frames) == 30
        assert {(w, h) for w, h, _, _ in frames} == {(1280, 720)}
        timed = [(p, t) for _, _, p, t in frames if p is not None]
        # FFmpeg's RTSP client may leave a frame without pts, and re-bases its clock once on the
        # first RTCP sender report: nearly all steps, not all, must move forward.
        steps = [b[0] - a[0] for a, b in zip(timed, timed[1:], strict=False)]
        assert len(timed) >= 25 and sum(d > 0 for d in steps) >= len(steps) - 1, [p for p, _ in timed]
        # FFmpeg's probing at open buffers frames, so arrival times say nothing; the pts step must
        # be that of a 90 kHz clock under a camera of 15 fps. The pts are publish times: a pipeline
        # catching up after a stall on a loaded machine publishes a few frames closer together
        # (one full run measured 16 fps over 30 frames), so the bound is 2x the camera's rate; a
        # wrong clock rate (a 1 kHz clock, frame numbers) is off by far more.
        step_s = (timed[-1][0] - timed[0][0]) / (len(timed) - 1) / 90_000
        assert 1 / 30 <= step_s <= 2.0
    assert encoder.keyframes > keyframes and waited < 25.0, "well before the 30 s keyframe floor"
    assert encoder.requests["subscribe"] >= 2
    await until(lambda: feed(server).readers == 0, 30)


@module_loop
async def test_rtsp_wants_the_token_as_password(server: RunningServer) -> None:
    await until(lambda: feed(server).readers == 0, 30)
    with pytest.raises(av.error.HTTPUnauthorizedError):
        await asyncio.to_thread(read, url(server, password="wrong"), "tcp", 1)
    assert feed(server).readers == 0


@module_loop
async def test_rtsp_port_in_use_is_a_clear_error(server: RunningServer) -> None:
    with pytest.raises(ConfigError, match="RTSP server did not start"):
        await start_server(rtsp_cfg(server.state.cfg.server.rtsp_out))


async def restarts_in_metrics(srv: RunningServer) -> float:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{srv.base_url}/metrics", headers={"Authorization": f"Bearer {srv.token}"}) as resp,
    ):
        text = await resp.text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("facestream_rtsp_out_restarts_total ")]
    return float(line.split()[1])


def read_until_cut(address: str, decoded: list[float]) -> None:
    """Decode until the stream breaks off (the test kills the server under it), noting when each
    frame came."""
    try:
        with av.open(address, options={"rtsp_transport": "tcp"}, timeout=10) as container:
            for _ in container.decode(video=0):
                decoded.append(time.monotonic())
    except av.error.FFmpegError:
        pass


@module_loop
async def test_a_killed_rtsp_child_is_restarted_and_serves_again(server: RunningServer) -> None:
    """Last in this module: it kills the child the other tests use."""
    rtsp = server.state.rtsp
    assert rtsp is not None and rtsp.pid is not None
    assert await restarts_in_metrics(server) == 0
    decoded: list[float] = []
    cut = asyncio.ensure_future(asyncio.to_thread(read_until_cut, url(server), decoded))
    await until(lambda: len(decoded) >= 5, 30)
    first_pid = rtsp.pid
    os.kill(first_pid, signal.SIGKILL)
    killed = time.monotonic()

    await asyncio.wait_for(cut, 60)
    assert decoded[-1] < killed + 5, "the stream ended with the child"
    # The reader is released at once, and live video goes on without RTSP meanwhile.
    await until(lambda: feed(server).readers == 0, 10)
    assert server.state.cameras["door"].viewers == 0
    assert server.state.cameras["door"].status.up
    await until(lambda: rtsp.pid is not None, 30)
    assert rtsp.pid != first_pid and await restarts_in_metrics(server) == 1

    frames, _ = await asyncio.to_thread(read, url(server), "tcp", 20)
    assert len(frames) == 20 and {(w, h) for w, h, _, _ in frames} == {(1280, 720)}
    await until(lambda: feed(server).readers == 0, 30)
