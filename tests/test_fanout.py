"""Encode once per camera track and fan the packets out: real pipeline, real demo source, real
VP8/H.264 encoders, real aiortc viewers on loopback, PLI sent as real RTCP by a viewer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import av
import numpy as np
import pytest
import pytest_asyncio
from aiortc.mediastreams import VIDEO_TIME_BASE
from test_webrtc import Received

from devtools.viewer import Viewer, ViewerError, connect_viewer
from streamer.config import (
    AppConfig,
    ConfigError,
    EnhanceConfig,
    OutputConfig,
    ServerConfig,
    SourceConfig,
    validate,
)
from streamer.server import RunningServer, start_server
from streamer.server.camera import CameraRunner
from streamer.server.encoder import (
    SPEEDS,
    EncodedFrame,
    KeyframePolicy,
    SharedEncoder,
    VideoEncoder,
    renditions,
)
from streamer.server.latency import read_stamp_from_frame
from streamer.server.tracks import MAX_LAG_S, PacketTrack

module_loop = pytest.mark.asyncio(loop_scope="module")
MIN_GAP_S = 1.0


def fanout_cfg(**server: object) -> AppConfig:
    return AppConfig(
        sources=(SourceConfig(uri="demo", name="door", demo_width=640, demo_height=360, demo_fps=15.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=2),
        server=ServerConfig(port=0, stamp_frames=True, max_peers_per_client=8, **server),  # type: ignore[arg-type]
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[RunningServer]:
    # A 30 s keyframe floor: within these tests every keyframe after the first is a forced one.
    srv = await start_server(fanout_cfg(keyframe_interval_s=30.0, keyframe_min_gap_s=MIN_GAP_S))
    yield srv
    await srv.stop()


async def watch(srv: RunningServer, got: Received, **kwargs: object) -> Viewer:
    return await connect_viewer(srv.base_url, srv.token, "door", got, **kwargs)  # type: ignore[arg-type]


async def until(condition: object, timeout: float) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def stamps(got: Received, kind: str) -> set[int]:
    return {s for _, _, s in got.frames[kind] if s is not None}


@module_loop
async def test_viewers_of_a_track_share_one_encode(server: RunningServer) -> None:
    tracks = server.state.tracks["door"]
    a, b = Received(), Received()
    va = await watch(server, a, tracks=("enhanced",))
    vb = await watch(server, b, tracks=("enhanced",))
    try:
        await a.wait(("enhanced",), 15)
        await b.wait(("enhanced",), 15)
        encoder = tracks.encoders[("enhanced", "vp8", "full")]
        assert encoder.sinks == 2
        feeds = [s.track for pc in server.state.peers for s in pc.getSenders()]
        assert len(feeds) == 2 and all(isinstance(t, PacketTrack) and t.encoder is encoder for t in feeds)
    finally:
        await va.close()
        await vb.close()
    assert {(w, h) for w, h, _ in a.frames["enhanced"] + b.frames["enhanced"]} == {(1280, 720)}
    common = stamps(a, "enhanced") & stamps(b, "enhanced")
    assert len(common) >= 10, "both viewers decode the same encoded pictures"


@module_loop
async def test_viewer_joining_mid_stream_decodes_within_a_generous_bound(server: RunningServer) -> None:
    first, late = Received(), Received()
    v1 = await watch(server, first, tracks=("original",))
    try:
        await first.wait(("original",), 20)
        encoder = server.state.tracks["door"].encoders[("original", "vp8", "full")]
        keys, joins = encoder.keyframes, encoder.requests["subscribe"]
        v2 = await watch(server, late, tracks=("original",))
        try:
            connected = await v2.wait_connected(30)
            await late.wait(("original",), 1, timeout=10)
            waited = time.monotonic() - connected
            before = len(first.frames["original"])
            await late.wait(("original",), 10)
        finally:
            await v2.close()
        assert len(first.frames["original"]) > before, "the first viewer keeps receiving"
    finally:
        await v1.close()
    # Without the forced keyframe the late viewer would wait for the 30 s floor.
    assert waited < 5.0, f"first picture {waited:.2f} s after connecting"
    assert encoder.requests["subscribe"] == joins + 1
    assert encoder.keyframes >= keys + 1
    assert stamps(late, "original") and min(stamps(late, "original")) > min(stamps(first, "original"))


@module_loop
async def test_pli_from_a_viewer_forces_one_keyframe_per_gap(server: RunningServer) -> None:
    got = Received()
    viewer = await watch(server, got, tracks=("enhanced",))
    try:
        await got.wait(("enhanced",), 5)
        pc = list(server.state.peers)[-1]  # this viewer's: the newest
        (sender,) = pc.getSenders()
        assert isinstance(sender.track, PacketTrack)
        encoder = sender.track.encoder
        await asyncio.sleep(MIN_GAP_S * 1.2)  # past the gap after the subscription's keyframe
        keys, plis = encoder.keyframes, encoder.requests["pli"]
        (receiver,) = viewer.pc.getReceivers()
        for _ in range(3):  # real RTCP PLIs from the viewer to the server's sender
            await receiver._send_rtcp_pli(sender._ssrc)
        await until(lambda: encoder.keyframes > keys, 10)
        await asyncio.sleep(MIN_GAP_S * 0.5)
        assert encoder.requests["pli"] >= plis + 3
        assert encoder.keyframes == keys + 1, "a burst of PLIs makes one keyframe, not one each"
        await asyncio.sleep(MIN_GAP_S * 0.7)
        await receiver._send_rtcp_pli(sender._ssrc)
        await until(lambda: encoder.keyframes >= keys + 2, 10)
        frames = len(got.frames["enhanced"])
        await got.wait(("enhanced",), frames + 5)
    finally:
        await viewer.close()


@module_loop
async def test_h264_and_the_low_rendition_are_other_shared_encoders(server: RunningServer) -> None:
    full, low = Received(), Received()
    vf = await watch(server, full, tracks=("enhanced",), codec="h264")
    vl = await watch(server, low, tracks=("enhanced",), codec="h264", rendition="low")
    try:
        await full.wait(("enhanced",), 10)
        await low.wait(("enhanced",), 10)
        bytes0 = [await vf.bytes_received(), await vl.bytes_received()]
        await full.wait(("enhanced",), len(full.frames["enhanced"]) + 20)
        bytes1 = [await vf.bytes_received(), await vl.bytes_received()]
    finally:
        await vf.close()
        await vl.close()
    encoders = server.state.tracks["door"].encoders
    assert {("enhanced", "h264", "full"), ("enhanced", "h264", "low")} <= set(encoders)
    assert {(w, h) for w, h, _ in full.frames["enhanced"]} == {(1280, 720)}
    assert {(w, h) for w, h, _ in low.frames["enhanced"]} == {(640, 360)}
    assert len(stamps(full, "enhanced")) >= 10, "stamps survive the shared H.264 encoder"
    assert bytes1[1] - bytes0[1] < bytes1[0] - bytes0[0], "the low rendition costs less bandwidth"


class Collect:
    """A sink outside any peer connection, as an RTP forwarder to an SFU would be."""

    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []
        self.ended = False

    def deliver(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)

    def end(self) -> None:
        self.ended = True


def nal_types(data: bytes) -> list[int]:
    return [data[i + 3] & 0x1F for i in range(len(data) - 3) if data[i : i + 3] == b"\x00\x00\x01"]


@module_loop
async def test_a_packet_sink_gets_decodable_annex_b_h264_from_a_keyframe_on(server: RunningServer) -> None:
    camera = server.state.cameras["door"]
    encoder = server.state.tracks["door"].encoder("original", "h264", "full")
    sink = Collect()
    camera.viewers += 1  # a sink outside a peer counts itself as a viewer: frames are made for it
    encoder.subscribe(sink)
    try:
        await until(lambda: len(sink.frames) >= 20, 60)
    finally:
        encoder.unsubscribe(sink)
        camera.viewers -= 1
    first = sink.frames[0]
    assert first.keyframe and bytes(first.packet)[:4] == b"\x00\x00\x00\x01"
    types = nal_types(bytes(first.packet))
    assert types.index(7) < types.index(8) < types.index(5), f"SPS, PPS, then IDR in band: {types}"
    pts = [int(f.packet.pts or 0) for f in sink.frames]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    assert all(f.packet.time_base == VIDEO_TIME_BASE for f in sink.frames)
    decoder = av.CodecContext.create("h264", "r")
    pictures = [p for f in sink.frames for p in decoder.decode(f.packet)]
    assert len(pictures) >= 15 and {(p.width, p.height) for p in pictures} == {(640, 360)}
    assert sum(read_stamp_from_frame(p) is not None for p in pictures) >= 15


@module_loop
async def test_encoders_stop_when_nobody_watches(server: RunningServer) -> None:
    got = Received()
    viewer = await watch(server, got, tracks=("original",))
    await got.wait(("original",), 3)
    encoder = server.state.tracks["door"].encoders[("original", "vp8", "full")]
    assert encoder.running
    await viewer.close()
    await until(lambda: not server.state.peers, 30)
    await until(lambda: not any(e.running for e in server.state.tracks["door"].encoders.values()), 10)
    assert encoder.sinks == 0 and server.state.cameras["door"].viewers == 0


@module_loop
async def test_offer_names_its_rendition(server: RunningServer) -> None:
    url = f"{server.base_url}/api/cameras/door/offer"
    headers = {"Authorization": f"Bearer {server.token}"}
    async with aiohttp.ClientSession() as http:
        body = {"sdp": "v=0\r\n", "type": "offer", "rendition": "ultra"}
        async with http.post(url, json=body, headers=headers) as resp:
            assert resp.status == 400 and "rendition" in await resp.text()
        async with http.get(f"{server.base_url}/api/cameras", headers=headers) as resp:
            assert (await resp.json())["renditions"] == {"full": 4000, "low": 1000}


@pytest.mark.asyncio
async def test_per_viewer_encoding_is_still_there_without_renditions() -> None:
    srv = await start_server(fanout_cfg(shared_encoder=False))
    got = Received()
    try:
        with pytest.raises(ViewerError, match="rendition"):
            await watch(srv, got, tracks=("enhanced",), rendition="low")
        viewer = await watch(srv, got, tracks=("enhanced",))
        try:
            await got.wait(("enhanced",), 10)
            senders = [s for pc in srv.state.peers for s in pc.getSenders()]
            assert senders and not any(isinstance(s.track, PacketTrack) for s in senders)
        finally:
            await viewer.close()
        assert not srv.state.tracks["door"].encoders
    finally:
        await srv.stop()
    assert len(stamps(got, "enhanced")) >= 8


def test_keyframe_policy() -> None:
    policy = KeyframePolicy(interval_s=2.0, min_gap_s=0.5)
    assert policy.take(10.0), "the first frame"
    assert not policy.take(10.1)
    policy.request(urgent=True)
    assert policy.take(10.2), "a new subscriber: the next frame, whatever the gap"
    policy.request(urgent=False)
    policy.request(urgent=False)
    assert not policy.take(10.5), "loss reports wait for the gap ..."
    assert policy.take(10.71), "... and are then served once"
    assert not policy.take(11.3)
    assert policy.take(12.71), "the floor"


def pattern(i: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    image = np.zeros((height * 3 // 2, width), np.uint8)
    image[:height] = np.add.outer(np.arange(height), np.arange(width) + 4 * i).astype(np.uint8)
    image[height:] = 128
    frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
    frame.pts, frame.time_base = i * 3000, VIDEO_TIME_BASE
    return frame


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_video_encoder_forces_keyframes_without_touching_the_frame(codec: str) -> None:
    encoder = VideoEncoder(codec, 1000)
    frames = [pattern(i) for i in range(12)]
    packets = [encoder.encode(f, keyframe=i in (0, 7)) for i, f in enumerate(frames)]
    assert [p is not None and p.is_keyframe for p in packets] == [i in (0, 7) for i in range(12)]
    assert all(f.pict_type == av.video.frame.PictureType.NONE for f in frames), "shared frames stay as made"
    assert [p.pts for p in packets if p is not None] == [f.pts for f in frames]
    bigger = encoder.encode(pattern(12, 640, 480), keyframe=False)
    assert bigger is not None and bigger.is_keyframe, "a new size starts a new stream at a keyframe"


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_every_encode_speed_gives_a_stream_a_real_decoder_plays_back_faithfully(codec: str) -> None:
    """The speeds trade CPU for picture quality (measured in the encoder's SPEEDS note); each
    must still be a stream a browser's decoder plays, close to the source, and the setting must
    reach the codec: speeds with different codec settings make different streams."""
    streams: dict[str, bytes] = {}
    for speed in SPEEDS:
        encoder = VideoEncoder(codec, 2000, speed)
        decoder = av.CodecContext.create(codec, "r")
        frames = [pattern(i) for i in range(8)]
        decoded, data = [], b""
        for i, f in enumerate(frames):
            packet = encoder.encode(f, keyframe=i == 0)
            if packet is not None:
                data += bytes(packet)
                decoded += [d.to_ndarray(format="gray") for d in decoder.decode(packet)]
        assert len(decoded) == len(frames), speed
        error = np.abs(decoded[-1].astype(int) - frames[-1].to_ndarray(format="gray")).mean()
        assert error < 6, (speed, error)
        streams[speed] = data
    setting = {speed: values[0 if codec == "vp8" else 1] for speed, values in SPEEDS.items()}
    assert len(set(streams.values())) == len(set(setting.values())), setting
    with pytest.raises(ValueError, match="speed must be one of"):
        VideoEncoder(codec, 1000, "warp")


def test_a_viewer_that_falls_behind_skips_to_the_next_keyframe() -> None:
    cfg = fanout_cfg()
    camera = CameraRunner(cfg, cfg.sources[0])
    encoder = SharedEncoder(camera, "original", "vp8", renditions(cfg.server)["full"], cfg.server)
    track = PacketTrack(encoder)
    video = VideoEncoder("vp8", 1000)
    packets = [video.encode(pattern(i), keyframe=i == 6) for i in range(10)]
    frames = [EncodedFrame(p, bool(p.is_keyframe), i) for i, p in enumerate(packets) if p is not None]
    for frame in frames[:3]:  # a keyframe (the encoder's first frame), then two more
        track.deliver(frame)
    assert track.queued == 3 and track.overflows == 0
    time.sleep(MAX_LAG_S + 0.05)  # the sender did not take them in time
    track.deliver(frames[3])
    assert track.overflows == 1 and encoder.requests["overflow"] == 1
    assert track.queued == 0, "the backlog is dropped; nothing but a keyframe may follow"
    for frame in frames[4:]:
        track.deliver(frame)
    assert [f.index for _, f in track._queue] == [6, 7, 8, 9] and track._queue[0][1].keyframe
    assert track.overflows == 1


def test_config_checks_the_fanout_settings() -> None:
    ok = fanout_cfg()
    assert validate(ok) is ok
    for bad in (
        {"low_divisor": 5},
        {"low_bitrate_kbps": 50},
        {"keyframe_interval_s": 0.1},
        {"keyframe_min_gap_s": 3.0},
    ):
        with pytest.raises(ConfigError):
            validate(replace(ok, server=replace(ok.server, **bad)))  # type: ignore[arg-type]
