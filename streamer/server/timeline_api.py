"""The face timeline over HTTP: the browsing page, the paginated list, the images, downloads.

Routes (token required, like every route but /healthz):
    GET /faces                              the timeline page
    GET /api/faces?camera=&since=&until=&limit=&cursor=
                                            tracks newest first, each with its best faces; `next`
                                            is the cursor of the next page
    GET /api/faces/{id}/enhanced.png        an enhanced face (PNG text chunks say it is one)
    GET /api/faces/{id}/original.png        the camera's own pixels of that face
    GET /api/faces/download?ids=1,2,3       a zip of the chosen faces, both images and metadata.json
    GET /api/recordings/{camera}/{segment}  a recorded mp4 segment (with --record-dir); each face in
                                            /api/faces names the segment and second it was seen in

Database reads run in a worker thread, so a slow disk delays the page, never the event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from prometheus_client import CollectorRegistry

from streamer.config import StorageConfig
from streamer.provenance import NOTE
from streamer.server.auth import Handler
from streamer.server.camera import CameraRunner
from streamer.server.recording import camera_dir, find_recording, segment_start
from streamer.timeline import FaceTimeline, TimelineMetrics

TIMELINE = web.AppKey("timeline", FaceTimeline)
RECORDINGS = web.AppKey("recordings", Path)
MAX_DOWNLOAD = 500
KINDS = ("enhanced", "original")


def add_timeline(
    app: web.Application,
    storage: StorageConfig,
    cameras: Iterable[CameraRunner],
    registry: CollectorRegistry,
    token: str,
    static_dir: Path,
    recordings: Path | None = None,
) -> None:
    """Keep the cameras' best faces when `storage` names a data folder, and add the routes (which
    say the timeline is off when it is). With `recordings` (the record folder) each listed face
    links to the second of recording it came from."""
    html = (static_dir / "faces.html").read_text().replace("{{token}}", quote(token, safe=""))

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    if storage.keeps_faces:
        timeline = FaceTimeline(storage, TimelineMetrics(registry))
        app[TIMELINE] = timeline
        for runner in cameras:
            runner.timeline = timeline

        async def start(app: web.Application) -> None:
            timeline.start()

        async def close(app: web.Application) -> None:
            await asyncio.to_thread(timeline.close)

        app.on_startup.append(start)
        app.on_cleanup.append(close)
    if recordings is not None:
        app[RECORDINGS] = recordings
        app.router.add_get("/api/recordings/{camera}/{segment}", recording)
    app.router.add_get("/faces", page)
    app.router.add_get("/api/faces", _guarded(list_faces))
    app.router.add_get("/api/faces/download", _guarded(download))
    app.router.add_get(r"/api/faces/{id:\d+}/{kind:enhanced|original}.png", _guarded(image))


def _guarded(handler: Handler) -> Handler:
    """A database being replaced or repaired makes the timeline answer 503 for a moment, not 500."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except sqlite3.DatabaseError as exc:
            raise web.HTTPServiceUnavailable(text=f"503: the face timeline is unavailable: {exc}") from None

    return guarded


def _timeline(request: web.Request) -> FaceTimeline:
    timeline = request.app.get(TIMELINE)
    if timeline is None:
        raise web.HTTPNotFound(text="404: the face timeline is off; start the server with --data-dir DIR")
    return timeline


def _number(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"400: {name} must be a number, got {raw[:40]!r}") from None
    if value < 0 or value != value:
        raise web.HTTPBadRequest(text=f"400: {name} must be >= 0")
    return value


def _cursor(raw: str) -> tuple[float, int] | None:
    if not raw:
        return None
    seen, _, ident = raw.partition(":")
    try:
        return float(seen), int(ident)
    except ValueError:
        raise web.HTTPBadRequest(text="400: cursor must be the `next` value of the previous page") from None


async def list_faces(request: web.Request) -> web.Response:
    timeline = _timeline(request)
    result = await asyncio.to_thread(
        timeline.query,
        camera=request.query.get("camera", ""),
        since=_number(request, "since", 0.0),
        until=_number(request, "until", 0.0),
        limit=int(_number(request, "limit", 50)),
        cursor=_cursor(request.query.get("cursor", "")),
    )
    result["healthy"] = timeline.healthy
    root = request.app.get(RECORDINGS)
    if root is not None:
        await asyncio.to_thread(_link_recordings, root, result["items"])
    return web.json_response(result)


def _link_recordings(root: Path, items: list[dict[str, Any]]) -> None:
    """Each face's segment and offset in it, where the camera was being recorded then."""
    for item in items:
        for face in item["faces"]:
            found = find_recording(root, item["camera"], float(face["seen"]))
            if found is not None:
                path, offset = found
                face["recording"] = {
                    "url": f"/api/recordings/{quote(item['camera'], safe='')}/{path.name}",
                    "offset_s": round(offset, 2),
                }


async def recording(request: web.Request) -> web.StreamResponse:
    root = request.app[RECORDINGS]
    camera, segment = request.match_info["camera"], request.match_info["segment"]
    path = camera_dir(root, camera) / segment
    if segment_start(Path(segment)) is None or "/" in segment or not path.is_file():
        raise web.HTTPNotFound(text="404: no such recording")
    return web.FileResponse(path, headers={"Content-Type": "video/mp4"})


async def image(request: web.Request) -> web.StreamResponse:
    timeline = _timeline(request)
    face_id, kind = int(request.match_info["id"]), request.match_info["kind"]
    path = await asyncio.to_thread(timeline.path_of, face_id, kind)
    if path is None:
        raise web.HTTPNotFound(text=f"404: no {kind} image for face {face_id}")
    return web.FileResponse(path, headers={"Content-Type": "image/png"})


def _ids(raw: str) -> list[int]:
    try:
        ids = sorted({int(v) for v in raw.split(",") if v.strip()})
    except ValueError:
        raise web.HTTPBadRequest(text="400: ids must be comma-separated face ids") from None
    if not ids:
        raise web.HTTPBadRequest(text="400: give ids=1,2,3 (face ids from /api/faces)")
    if len(ids) > MAX_DOWNLOAD:
        raise web.HTTPRequestEntityTooLarge(MAX_DOWNLOAD, len(ids), text=f"413: at most {MAX_DOWNLOAD} faces")
    return ids


def _zip(timeline: FaceTimeline, ids: list[int]) -> tuple[bytes, int]:
    records = timeline.faces(ids)
    buf = io.BytesIO()
    listed: list[dict[str, Any]] = []
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for rec in records:
            files = rec.pop("files")
            names = {}
            for kind in KINDS:
                path = timeline.root / files[kind]
                if path.is_file():
                    names[kind] = f"{rec['camera']}-track{rec['track_id']}-face{rec['id']}-{kind}.png"
                    zf.write(path, names[kind])
            listed.append({**rec, "files": names})
        found = {rec["id"] for rec in listed}
        meta = {
            "note": NOTE,
            "exported_at": time.time(),
            "faces": listed,
            "missing": [i for i in ids if i not in found],  # replaced or expired since listed
        }
        zf.writestr("metadata.json", json.dumps(meta, indent=2))
    return buf.getvalue(), len(records)


async def download(request: web.Request) -> web.Response:
    timeline = _timeline(request)
    ids = _ids(request.query.get("ids", ""))
    body, found = await asyncio.to_thread(_zip, timeline, ids)
    if not found:
        raise web.HTTPNotFound(text="404: none of these faces is kept (any more)")
    name = time.strftime("facestream-faces-%Y%m%d-%H%M%S.zip")
    return web.Response(
        body=body,
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
