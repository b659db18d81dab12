"""facestream on a real local 2-node Ray cluster (`ray.cluster_utils.Cluster`): camera actors,
the batched Serve engine, the head's server with a real aiortc viewer, a node and a replica
killed under it. One cluster and one server for the module (a cluster takes 10-20 s to start).

Skipped where Ray is not installed (it is an optional extra: requirements-cluster.txt); the
checks of what happens without Ray run everywhere.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from test_webrtc import Received

from devtools.viewer import connect_viewer
from streamer.cluster.resources import CAMERA, ENGINE
from streamer.config import AppConfig, ClusterConfig, DetectConfig, EnhanceConfig, ServerConfig, SourceConfig
from streamer.server import RunningServer, start_server

REPO = Path(__file__).resolve().parents[1]
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAVE_RAY, reason="Ray is not installed: pip install -r requirements-cluster.txt"
)
module_loop = pytest.mark.asyncio(loop_scope="module")
pytestmark = pytest.mark.cluster
CAMERAS = ("door", "hall")


def run_py(*args: str, block_ray: bool = False) -> subprocess.CompletedProcess[str]:
    prelude = "import sys; sys.modules['ray'] = None; " if block_ray else "import sys; "
    code = prelude + "from streamer import cli; sys.exit(cli.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_without_ray_nothing_of_it_is_imported() -> None:
    code = (
        "import sys; from streamer import cli; from streamer.server import start_server; "
        "import streamer.server.app; "
        "cli.build_config(cli.make_parser().parse_args(['serve']), 'serve'); print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_ray_not_installed_is_one_line_and_exit_2() -> None:
    out = run_py("serve", "--ray", "auto", "--port", "0", block_ray=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "requirements-cluster.txt" in lines[0], out.stderr


@needs_ray
def test_a_cluster_that_is_not_there_is_one_line_and_exit_2() -> None:
    started = time.monotonic()
    out = run_py("serve", "--ray", "127.0.0.1:1", "--port", "0")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Ray cluster at 127.0.0.1:1" in lines[0] and "ray start --head" in lines[0]
    assert time.monotonic() - started < 60


# -- the cluster -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    if not HAVE_RAY:
        pytest.skip("Ray is not installed: pip install -r requirements-cluster.txt")
    from ray.cluster_utils import Cluster

    # The head holds one camera at most, so SPREAD (best effort) cannot put both on it: the
    # node-failure test needs a camera on the worker.
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {CAMERA: 1, ENGINE: 1}})
    c.worker = c.add_node(num_cpus=1, resources={CAMERA: 3, ENGINE: 1})
    c.wait_for_nodes()
    yield c
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    c.shutdown()


def cluster_cfg(address: str) -> AppConfig:
    demo = {"uri": "demo", "demo_width": 480, "demo_height": 270, "demo_fps": 10.0}
    sources = tuple(SourceConfig(name=n, demo_seed=i, **demo) for i, n in enumerate(CAMERAS))  # type: ignore[arg-type]
    return AppConfig(
        sources=(*sources, SourceConfig(uri="/nonexistent/broken.mp4", name="broken")),
        detect=DetectConfig(input_width=480),
        enhance=EnhanceConfig(engine="bicubic", per_frame=0),
        server=ServerConfig(port=0),
        cluster=ClusterConfig(ray=address, max_batch=4),
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(cluster: Any) -> AsyncIterator[RunningServer]:
    from streamer.cluster.connect import start

    cfg = cluster_cfg(cluster.address)
    factory = await asyncio.to_thread(start, cfg)
    srv = await start_server(cfg, camera_factory=factory)
    yield srv
    await srv.stop()


def camera(srv: RunningServer, name: str) -> Any:
    return srv.state.cameras[name]


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)


def node_of(srv: RunningServer, name: str) -> str:
    import ray

    return str(ray.get(camera(srv, name).actor.node.remote(), timeout=30))


async def api_cameras(srv: RunningServer) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{srv.base_url}/api/cameras", headers={"Authorization": f"Bearer {srv.token}"}) as r,
    ):
        body = await r.json()
    return {c["name"]: c for c in body["cameras"]}


@needs_ray
@module_loop
async def test_a_viewer_on_the_head_receives_both_cameras(server: RunningServer) -> None:
    await until(lambda: all(camera(server, n).status.up for n in CAMERAS), 180, "both cameras live")
    got = {n: Received() for n in CAMERAS}
    viewers = [await connect_viewer(server.base_url, server.token, n, got[n]) for n in CAMERAS]
    try:
        for n in CAMERAS:
            await got[n].wait(("enhanced", "original"), 10, timeout=60)
            w, h, _ = got[n].frames["original"][-1]
            assert (w, h) == (480, 270)
    finally:
        for v in viewers:
            await v.close()
    cams = await api_cameras(server)
    assert all(cams[n]["status"] == "live" and cams[n]["frame_size"] == [480, 270] for n in CAMERAS)
    assert "ray serve" in cams["door"]["backend"]


@needs_ray
@module_loop
async def test_faces_are_enhanced_by_the_batched_engine(server: RunningServer) -> None:
    start = {n: camera(server, n).remote.get("faces_enhanced", 0) for n in CAMERAS}
    await until(
        lambda: all(camera(server, n).remote.get("faces_enhanced", 0) > start[n] for n in CAMERAS),
        60,
        "faces enhanced on both cameras",
    )


@needs_ray
@module_loop
async def test_live_controls_reach_the_camera_actor(server: RunningServer) -> None:
    url = f"{server.base_url}/api/cameras/door/controls"
    headers = {"Authorization": f"Bearer {server.token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(url, json={"detect_interval": 2}) as r:
            assert r.status == 200 and (await r.json())["controls"]["detect_interval"] == 2
        async with s.post(url, json={"detect_interval": 99}) as r:
            assert r.status == 400 and "<= 30" in await r.text()
    await until(
        lambda: camera(server, "door").processor.controls["detect_interval"] == 2, 10, "controls shown"
    )


@needs_ray
@module_loop
async def test_a_camera_that_cannot_start_is_down_and_retried_with_backoff(server: RunningServer) -> None:
    broken = camera(server, "broken")
    await until(
        lambda: broken.status.state == "down" and broken.status.attempt >= 2, 90, "broken camera down"
    )
    cams = await api_cameras(server)
    assert cams["broken"]["status"] == "down" and "broken.mp4" in (cams["broken"]["last_error"] or "")
    attempt, t0 = broken.status.attempt, time.monotonic()
    await asyncio.sleep(3.0)
    # Delays double from 1 s: a hot loop would have made dozens of attempts by now.
    assert broken.status.attempt - attempt <= 2, (broken.status.attempt, attempt, time.monotonic() - t0)


@needs_ray
@module_loop
async def test_an_engine_replica_that_dies_is_replaced_and_no_camera_stalls(server: RunningServer) -> None:
    import ray

    from streamer.cluster.connect import APP, DEPLOYMENT

    replicas = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if f"{APP}#{DEPLOYMENT}" in a["name"]
    ]
    assert len(replicas) == 1, replicas
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]))
    killed = time.monotonic()
    gaps = {n: 0.0 for n in CAMERAS}
    seen = {n: camera(server, n).latest.seq for n in CAMERAS}
    last = {n: killed for n in CAMERAS}
    enhanced = {n: camera(server, n).remote.get("faces_enhanced", 0) for n in CAMERAS}
    while time.monotonic() - killed < 12.0:
        await asyncio.sleep(0.1)
        now = time.monotonic()
        for n in CAMERAS:
            seq = camera(server, n).latest.seq
            if seq > seen[n]:
                seen[n], last[n] = seq, now
            gaps[n] = max(gaps[n], now - last[n])
    assert max(gaps.values()) < 5.0, gaps
    # ...and a new replica enhances again.
    await until(
        lambda: all(camera(server, n).remote.get("faces_enhanced", 0) > enhanced[n] + 5 for n in CAMERAS),
        60,
        "faces enhanced again after the replica died",
    )


@needs_ray
@module_loop
async def test_killing_the_worker_node_brings_its_camera_back_on_the_other(
    server: RunningServer, cluster: Any
) -> None:
    worker = cluster.worker.node_id
    on_worker = [n for n in CAMERAS if node_of(server, n) == worker]
    assert on_worker, "a camera should run on the worker (the head holds one at most)"
    name = on_worker[0]
    got = Received()
    viewer = await connect_viewer(server.base_url, server.token, name, got, tracks=("enhanced",))
    try:
        await got.wait(("enhanced",), 5, timeout=60)
        # Room for the camera elsewhere once its node is gone (the head is full). Ray starts a
        # node only from the main thread, so this blocks the loop for the few seconds it takes.
        cluster.add_node(num_cpus=1, resources={CAMERA: 2})
        cluster.wait_for_nodes()
        await asyncio.to_thread(cluster.remove_node, cluster.worker)
        killed = time.monotonic()
        before = len(got.frames["enhanced"])
        seq = camera(server, name).latest.seq
        await until(lambda: camera(server, name).latest.seq > seq + 5, 30, "frames from the restarted actor")
        await until(
            lambda: len(got.frames["enhanced"]) > before + 5,
            30 - (time.monotonic() - killed),
            "the viewer decodes again",
        )
        assert time.monotonic() - killed < 30
        assert node_of(server, name) != worker
    finally:
        await viewer.close()
