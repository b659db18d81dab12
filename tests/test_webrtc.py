"""Real WebRTC on loopback: an aiortc viewer receives a camera's original and enhanced tracks
through the server (real pipeline, real demo source, real VP8/H.264 encoders and decoders) and
reads the frame-number stamps back from the decoded pictures."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from devtools.viewer import Viewer, connect_viewer
from streamer.config import AppConfig, EnhanceConfig, OutputConfig, ServerConfig, SourceConfig
from streamer.server import RunningServer, start_server
from streamer.server.latency import read_stamp_from_frame

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[RunningServer]:
    cfg = AppConfig(
        sources=(SourceConfig(uri="demo", name="door", demo_width=640, demo_height=360, demo_fps=15.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=2),
        server=ServerConfig(port=0, stamp_frames=True, max_peers_per_client=8),
    )
    srv = await start_server(cfg)
    yield srv
    await srv.stop()


class Received:
    """What a viewer got, per track: (width, height, stamp) of every decoded frame."""

    def __init__(self) -> None:
        self.frames: dict[str, list[tuple[int, int, int | None]]] = defaultdict(list)

    def __call__(self, kind: str, frame, t: float) -> None:  # type: ignore[no-untyped-def]
        self.frames[kind].append((frame.width, frame.height, read_stamp_from_frame(frame)))

    async def wait(self, kinds: tuple[str, ...], n: int, timeout: float = 60.0) -> None:
        async def enough() -> None:
            while any(len(self.frames[k]) < n for k in kinds):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(enough(), timeout)


async def watch(srv: RunningServer, got: Received, **kwargs: object) -> Viewer:
    return await connect_viewer(srv.base_url, srv.token, "door", got, **kwargs)  # type: ignore[arg-type]


@module_loop
async def test_viewer_receives_both_tracks_at_their_sizes_with_advancing_frames(
    server: RunningServer,
) -> None:
    got = Received()
    viewer = await watch(server, got)
    try:
        await got.wait(("enhanced", "original"), 20)
    finally:
        await viewer.close()
    assert viewer.codec == "vp8"
    enhanced, original = got.frames["enhanced"], got.frames["original"]
    assert {(w, h) for w, h, _ in enhanced} == {(1280, 720)}
    assert {(w, h) for w, h, _ in original} == {(640, 360)}
    for frames in (enhanced, original):
        stamps = [s for _, _, s in frames if s is not None]
        assert len(stamps) >= 0.9 * len(frames), "stamps must survive the codec"
        assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), stamps
        assert stamps[-1] - stamps[0] >= 10


@module_loop
async def test_h264_is_selectable(server: RunningServer) -> None:
    got = Received()
    viewer = await watch(server, got, codec="h264", tracks=("enhanced",))
    try:
        await got.wait(("enhanced",), 10)
        sdp = viewer.pc.remoteDescription.sdp
    finally:
        await viewer.close()
    assert viewer.codec == "h264"
    rtpmaps = [line for line in sdp.splitlines() if line.startswith("a=rtpmap:")]
    assert rtpmaps and all("H264" in line or "rtx" in line for line in rtpmaps), rtpmaps
    assert {(w, h) for w, h, _ in got.frames["enhanced"]} == {(1280, 720)}
    stamps = [s for _, _, s in got.frames["enhanced"] if s is not None]
    assert stamps == sorted(stamps) and len(stamps) >= 8


@module_loop
async def test_controls_change_what_viewers_receive(server: RunningServer) -> None:
    """A live control (output mode) reaches the enhanced track without reconnecting."""
    got = Received()
    viewer = await watch(server, got, tracks=("enhanced",))
    url = f"{server.base_url}/api/cameras/door/controls"
    headers = {"Authorization": f"Bearer {server.token}"}
    try:
        await got.wait(("enhanced",), 5)
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"mode": "inset"}, headers=headers) as resp:
                assert resp.status == 200
            before = len(got.frames["enhanced"])

            async def inset_arrives() -> None:
                while not any((w, h) == (640, 360) for w, h, _ in got.frames["enhanced"][before:]):
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(inset_arrives(), 60)
            async with http.post(url, json={"mode": "upscale"}, headers=headers) as resp:
                assert resp.status == 200
    finally:
        await viewer.close()


@module_loop
async def test_two_viewers_share_one_pipeline(server: RunningServer) -> None:
    """Fan-out: both viewers get the same frames (same stamps), processed once."""
    camera = server.state.cameras["door"]
    a, b = Received(), Received()
    va = await watch(server, a, tracks=("original",))
    vb = await watch(server, b, tracks=("original",))
    try:
        await a.wait(("original",), 15)
        await b.wait(("original",), 15)
        assert camera.viewers == 2
    finally:
        await va.close()
        await vb.close()
    stamps_a = {s for _, _, s in a.frames["original"] if s is not None}
    stamps_b = {s for _, _, s in b.frames["original"] if s is not None}
    assert len(stamps_a & stamps_b) >= 5


def test_raising_aiortcs_bitrate_cap_improves_the_picture() -> None:
    """aiortc's own VP8 encoder/decoder on real enhanced frames at 30 fps timestamps: the stock
    1.5 Mbit/s cap loses detail that a raised cap keeps (the numbers go in the latency bench)."""
    from benchmarks.latency import codec_sweep, enhanced_clip

    images, boxes = enhanced_clip("bicubic", 12)
    assert images[0].shape == (720, 1280, 3)
    low, high = codec_sweep(images, boxes, [1500, 6000])
    assert high["kbit/s out"] > 2 * low["kbit/s out"]
    assert high["PSNR dB"] > low["PSNR dB"] + 0.5, (low, high)
    assert vpx_defaults() == (250_000, 500_000, 1_500_000)  # the sweep leaves aiortc as it found it


def vpx_defaults() -> tuple[int, int, int]:
    from aiortc.codecs import vpx

    return vpx.MIN_BITRATE, vpx.DEFAULT_BITRATE, vpx.MAX_BITRATE
