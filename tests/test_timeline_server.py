"""The face timeline through a real server on loopback: the real demo camera, the real detector
and pipeline (bicubic engine) fill a real SQLite file; /api/faces pages it with the token,
serves both images and zips a selection; and live video goes on while the timeline's disk (a
real tmpfs) is full."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image
from test_timeline import fill, tiny_disk  # noqa: F401  (a fixture)

from streamer.config import AppConfig, EnhanceConfig, ServerConfig, SourceConfig, StorageConfig
from streamer.provenance import NOTE, PNG_KEYWORD
from streamer.server import RunningServer, start_server

module_loop = pytest.mark.asyncio(loop_scope="module")
TOKEN = "timeline-token"


def cfg(data_dir: str, **storage: object) -> AppConfig:
    src = SourceConfig(uri="demo", name="cam1", demo_width=640, demo_height=360, demo_fps=15.0)
    return AppConfig(
        sources=(src,),
        enhance=EnhanceConfig(engine="bicubic"),
        server=ServerConfig(port=0, token=TOKEN),
        storage=StorageConfig(data_dir=data_dir, **storage),  # type: ignore[arg-type]
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    srv = await start_server(cfg(str(tmp_path_factory.mktemp("timeline")), min_free_mb=0))
    yield srv
    await srv.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> dict:  # type: ignore[type-arg]
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()  # type: ignore[no-any-return]


async def wait_for_tracks(  # type: ignore[type-arg]
    http: aiohttp.ClientSession, base: str, n: int, timeout: float = 90.0, camera: str = ""
) -> dict:
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        page = await get_json(http, f"{base}/api/faces?limit=50&camera={camera}")
        if len(page["items"]) >= n or time.monotonic() > deadline:
            return page
        await asyncio.sleep(0.5)


@module_loop
async def test_timeline_routes_need_the_token(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as anon:
        for path in ("/faces", "/api/faces", "/api/faces/1/enhanced.png", "/api/faces/download?ids=1"):
            async with anon.get(server.base_url + path) as r:
                assert r.status == 401, path
            async with anon.get(server.base_url + path, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401, path


@module_loop
async def test_seen_faces_are_listed_newest_first_with_both_images(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    page = await wait_for_tracks(http, server.base_url, 2)
    assert len(page["items"]) >= 2, page
    assert page["cameras"] == ["cam1"] and page["note"] == NOTE and page["healthy"] is True
    last_seen = [item["last_seen"] for item in page["items"]]
    assert last_seen == sorted(last_seen, reverse=True)
    item = page["items"][0]
    assert item["camera"] == "cam1" and item["first_seen"] <= item["last_seen"] <= time.time()
    face = item["faces"][0]
    assert face["enhanced"] is True and face["engine"] == "bicubic"
    async with http.get(server.base_url + face["enhanced_url"]) as r:
        assert r.status == 200 and r.content_type == "image/png"
        enhanced = Image.open(io.BytesIO(await r.read()))
    assert enhanced.size == (face["enhanced_size"],) * 2 and enhanced.text[PNG_KEYWORD].startswith("true")
    async with http.get(server.base_url + face["original_url"]) as r:
        assert r.status == 200
        original = Image.open(io.BytesIO(await r.read()))
    assert "x".join(map(str, original.size)) == face["original_size"]
    assert PNG_KEYWORD not in original.text
    async with http.get(server.base_url + "/api/faces/999999/enhanced.png") as r:
        assert r.status == 404


@module_loop
async def test_pages_follow_the_cursor_and_bad_queries_are_refused(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    await wait_for_tracks(http, server.base_url, 4, camera="cam1")  # three pages, each with a next
    seen: list[int] = []
    url = f"{server.base_url}/api/faces?limit=1&camera=cam1"
    for _ in range(3):
        page = await get_json(http, url)
        assert len(page["items"]) == 1 and page["next"]
        seen.append(page["items"][0]["track"])
        url = f"{server.base_url}/api/faces?limit=1&camera=cam1&cursor={page['next']}"
    assert len(set(seen)) == 3
    assert (await get_json(http, f"{server.base_url}/api/faces?camera=elsewhere"))["items"] == []
    future = time.time() + 3600
    assert (await get_json(http, f"{server.base_url}/api/faces?since={future}"))["items"] == []
    for query in ("cursor=nonsense", "since=yesterday", "limit=x", "since=-5"):
        async with http.get(f"{server.base_url}/api/faces?{query}") as r:
            assert r.status == 400, query


@module_loop
async def test_a_selection_downloads_as_a_zip_with_metadata(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    page = await wait_for_tracks(http, server.base_url, 2)
    ids = [item["faces"][0]["id"] for item in page["items"][:2]]
    async with http.get(f"{server.base_url}/api/faces/download?ids={ids[0]},{ids[1]}") as r:
        assert r.status == 200 and r.content_type == "application/zip"
        assert "attachment" in r.headers["Content-Disposition"]
        archive = zipfile.ZipFile(io.BytesIO(await r.read()))
    meta = json.loads(archive.read("metadata.json"))
    found = sorted(f["id"] for f in meta["faces"])
    assert meta["note"] == NOTE and found and sorted(found + meta["missing"]) == sorted(ids)
    for record in meta["faces"]:
        assert record["enhanced"] is True and record["camera"] == "cam1"
        enhanced = Image.open(io.BytesIO(archive.read(record["files"]["enhanced"])))
        assert enhanced.text[PNG_KEYWORD].startswith("true")
        assert archive.read(record["files"]["original"]).startswith(b"\x89PNG")
    for query, status in (("ids=abc", 400), ("ids=", 400), ("ids=999999", 404)):
        async with http.get(f"{server.base_url}/api/faces/download?{query}") as r:
            assert r.status == status, query
    many = ",".join(str(i) for i in range(1, 600))
    async with http.get(f"{server.base_url}/api/faces/download?ids={many}") as r:
        assert r.status == 413


@module_loop
async def test_enhanced_frames_say_so_and_metrics_count_saved_faces(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    await wait_for_tracks(http, server.base_url, 1)
    latest = server.state.cameras["cam1"].latest
    assert latest is not None and latest.result.faces
    assert json.loads(latest.meta_json)["enhanced"] is True
    corner = latest.result.output[-22:, :150]
    assert corner.max() > 230 and corner.min() < 60  # the corner label: white text on a dark box
    async with http.get(server.base_url + "/metrics") as r:
        text = await r.text()
    saved = [
        ln
        for ln in text.splitlines()
        if ln.startswith('facestream_timeline_faces_saved_total{camera="cam1"}')
    ]
    assert saved and float(saved[0].split()[-1]) >= 1
    assert "facestream_timeline_healthy 1.0" in text


@module_loop
@pytest.mark.parametrize("off", ["", "off"])
async def test_timeline_off_says_so(off: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    srv = await start_server(cfg(off))
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with http.get(srv.base_url + "/api/faces") as r:
                assert r.status == 404 and "--data-dir" in await r.text()
            async with http.get(srv.base_url + "/faces") as r:
                assert r.status == 200  # the page loads and shows that message
    finally:
        await srv.stop()
    assert not list(tmp_path.iterdir())  # no folder named "off"


def frames(text: str) -> float:
    line = next(
        ln for ln in text.splitlines() if ln.startswith('facestream_frames_processed_total{camera="cam1"}')
    )
    return float(line.split()[-1])


@module_loop
async def test_live_video_goes_on_while_the_disk_is_full(tiny_disk: Path) -> None:  # noqa: F811
    import asyncio

    filler = fill(tiny_disk)
    srv = await start_server(cfg(str(tiny_disk / "data"), min_free_mb=0))
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            deadline = time.monotonic() + 60
            text = ""
            while time.monotonic() < deadline:
                async with http.get(srv.base_url + "/metrics") as r:
                    text = await r.text()
                if frames(text) > 5 and 'kind="disk_full"} 0.0' not in text:
                    break
                await asyncio.sleep(0.5)
            before = frames(text)
            assert before > 5 and 'kind="disk_full"} 0.0' not in text, text
            await asyncio.sleep(2.0)
            async with http.get(srv.base_url + "/metrics") as r:
                text = await r.text()
            assert frames(text) > before + 5  # still processing frames
            assert "facestream_timeline_healthy 0.0" in text
            async with http.get(srv.base_url + "/healthz") as r:
                assert r.status == 200
            filler.unlink()  # room again: the timeline recovers by itself
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                async with http.get(srv.base_url + "/api/faces") as r:
                    page = await r.json()
                if page["healthy"] and page["items"]:
                    break
                await asyncio.sleep(0.5)
            assert page["healthy"] and page["items"], page
    finally:
        await srv.stop()


@module_loop
async def test_grafana_dashboard_queries_only_metrics_the_server_exports(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    import re

    await wait_for_tracks(http, server.base_url, 1)
    async with http.get(server.base_url + "/metrics") as r:
        lines = (await r.text()).splitlines()
    # Declared families (# TYPE), not samples: a labelled counter has none before its first event.
    declared = [ln.split()[2:4] for ln in lines if ln.startswith("# TYPE ")]
    exported = {name for name, _ in declared} | {
        f"{name}{suffix}"
        for name, kind in declared
        if kind == "histogram"
        for suffix in ("_bucket", "_sum", "_count")
    }
    dashboard = json.loads((Path(__file__).resolve().parents[1] / "docs/grafana/facestream.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs.append(dashboard["templating"]["list"][0]["query"]["query"])
    used = {name for e in exprs for name in re.findall(r"facestream_[a-z_]+", e)}
    assert len(used) >= 12 and used <= exported, used - exported
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["__inputs"][0]["pluginId"] == "prometheus"


@module_loop
async def test_a_face_links_to_the_second_of_recording_it_came_from(tmp_path: Path) -> None:
    """With recording on, each listed face names the mp4 segment and offset it was seen in, and
    that segment is served (token required) and plays."""
    import asyncio

    import av

    from streamer.config import RecordConfig

    base = cfg(str(tmp_path / "data"), min_free_mb=0)
    srv = await start_server(replace(base, record=RecordConfig(dir=str(tmp_path / "rec"), segment_s=2.0)))
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            linked: list[dict] = []  # type: ignore[type-arg]
            deadline = time.monotonic() + 90
            while not linked and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                page = await get_json(http, f"{srv.base_url}/api/faces?limit=50")
                linked = [f for item in page["items"] for f in item["faces"] if "recording" in f]
            assert linked, "no face links to a recording"
            link = linked[0]["recording"]
            assert link["url"].startswith("/api/recordings/cam1/") and link["offset_s"] >= 0
            async with http.get(srv.base_url + link["url"]) as r:
                assert r.status == 200 and r.content_type == "video/mp4"
                (tmp_path / "segment.mp4").write_bytes(await r.read())
            async with http.get(srv.base_url + "/api/recordings/cam1/..%2Fdata%2Ffaces.db") as r:
                assert r.status == 404
        async with aiohttp.ClientSession() as anonymous, anonymous.get(srv.base_url + link["url"]) as r:
            assert r.status == 401
    finally:
        await srv.stop()
    with av.open(str(tmp_path / "segment.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) > 0
        assert (container.duration or 0) / av.time_base + 0.5 >= link["offset_s"]
