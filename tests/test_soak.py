"""Two cameras, three viewers at once (one of them deliberately slow, plus one that vanishes
without saying goodbye): no viewer stalls another, and the server's memory stays bounded.

Viewers are separate processes (`python -m devtools.viewer`), so a slow one is slow on
its own clock, a killed one really disappears, and the RSS measured here is the server's alone.
The default run is short; `-m slow` runs the 30 s version.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from streamer.config import AppConfig, EnhanceConfig, OutputConfig, ServerConfig, SourceConfig
from streamer.server import RunningServer, start_server

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def spawn_viewer(srv: RunningServer, slow: float = 0.0) -> asyncio.subprocess.Process:
    """A viewer process watching both cameras until SIGTERM, then printing its JSON report."""
    args = [
        sys.executable,
        "-m",
        "devtools.viewer",
        srv.url,
        "--camera",
        "north",
        "--camera",
        "south",
        "--seconds",
        "0",
    ]
    if slow:
        args += ["--slow", str(slow)]
    return await asyncio.create_subprocess_exec(
        *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def soak(seconds: float, warmup: int, max_growth_mb: float) -> None:
    cfg = AppConfig(
        sources=(
            SourceConfig(uri="demo", name="north", demo_width=640, demo_height=360, demo_fps=15.0),
            SourceConfig(
                uri="demo", name="south", demo_width=640, demo_height=360, demo_fps=15.0, demo_seed=3
            ),
        ),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=1),
        server=ServerConfig(port=0, stamp_frames=True, max_peers_per_client=16, max_peers_total=16),
    )
    srv = await start_server(cfg)
    try:
        for _ in range(600):  # cameras warm (models loaded, first frames out) before viewers join
            if all(c.latest is not None for c in srv.state.cameras.values()):
                break
            await asyncio.sleep(0.1)
        fast = [await spawn_viewer(srv) for _ in range(2)]
        slow = await spawn_viewer(srv, slow=0.5)
        vanishing = await spawn_viewer(srv)
        # Every viewer's encoders allocate their buffers on their first frames; RSS is compared
        # after all viewers are in and `warmup` more frames went out (frames, not seconds: the
        # machine may be busy).
        cams = list(srv.state.cameras.values())
        for _ in range(1200):
            if all(c.viewers == 4 for c in cams):
                break
            await asyncio.sleep(0.1)
        assert all(c.viewers == 4 for c in cams), [c.viewers for c in cams]
        seq0 = [c.latest.seq for c in cams]  # type: ignore[union-attr]
        for _ in range(1200):
            if all(c.latest.seq - s0 >= warmup for c, s0 in zip(cams, seq0, strict=True)):  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.1)
        rss_start = rss_mb()
        samples = []
        for tick in range(int(seconds * 2)):
            await asyncio.sleep(0.5)
            samples.append(rss_mb())
            if tick == 4:
                vanishing.send_signal(signal.SIGKILL)  # leaves mid-stream, no DTLS goodbye
        for p in [*fast, slow]:
            p.send_signal(signal.SIGTERM)
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in [*fast, slow])), 120)
        await vanishing.wait()
        published = {name: c.latest.seq for name, c in srv.state.cameras.items() if c.latest}
    finally:
        await srv.stop()

    reports = []
    for out, err in outputs:
        assert out.strip(), err.decode()[-2000:]
        reports.append(json.loads(out))
    growth = max(samples) - rss_start
    half = len(samples) // 2
    late_growth = max(samples[half:]) - max(samples[:half])  # a leak keeps growing; a warm-up settles
    print(
        f"\nsoak {seconds:.0f}s after {warmup} warm-up frames: server RSS {rss_start:.0f} MB -> max "
        f"{max(samples):.0f} MB (growth {growth:+.0f} MB, second half {late_growth:+.0f} MB); "
        f"published {published}; frames per track: "
        f"fast {[{k: v['frames'] for k, v in r.items()} for r in reports[:2]]}, "
        f"slow { {k: v['frames'] for k, v in reports[2].items()} }"
    )
    for report in reports[:2]:  # fast viewers: every track of both cameras kept flowing
        assert set(report) == {"north/enhanced", "north/original", "south/enhanced", "south/original"}, report
        for key, r in report.items():
            assert r["frames"] >= 10, (key, r)
            assert r["stamps"] >= 0.9 * r["frames"], (key, r)
            assert r["stamp_last"] > r["stamp_first"], (key, r)
            # A stall shows as a long hole in arrivals: the slow and the vanished viewer must not cause one.
            assert r["max_gap_s"] < 5.0, (key, r)
    assert all(r["frames"] > 0 for r in reports[2].values()), reports[2]  # the slow one got frames too
    assert growth < max_growth_mb, f"server RSS grew {growth:.0f} MB over {seconds:.0f} s: {samples}"
    assert late_growth < max_growth_mb / 2, f"server RSS still growing in the second half: {samples}"


@pytest.mark.asyncio
async def test_two_cameras_three_viewers_short() -> None:
    await soak(8.0, warmup=60, max_growth_mb=100.0)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_two_cameras_three_viewers_30s() -> None:
    await soak(30.0, warmup=90, max_growth_mb=100.0)


def test_viewer_cli_needs_a_camera() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "devtools.viewer", "http://127.0.0.1:1/?token=x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2 and "--camera" in result.stderr
