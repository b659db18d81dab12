"""The face timeline on a real SQLite file and real PNG files: which faces it keeps, paging,
retention, and what a deleted folder, a corrupt database and a really full disk (a tiny tmpfs)
do to it. Frames are built here with known landmarks and sharpness, so the expected choice of
faces can be computed independently of the detector."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from streamer.config import StorageConfig
from streamer.provenance import NOTE, PNG_KEYWORD, label_frame
from streamer.timeline import (
    QUEUE_MAX,
    REPLACED_KEEP_S,
    SCHEMA,
    FaceTimeline,
    TimelineMetrics,
    default_data_dir,
    face_score,
    frontality,
)
from streamer.types import EnhancedFace, FaceCrop, Frame, FrameResult, StageTimes, Track

RNG = np.random.default_rng(0)
TEXTURE = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)


def landmarks(box: tuple[float, float, float, float], turn: float) -> np.ndarray:
    """Five landmarks in a box; `turn` moves the nose sideways (0 frontal, 0.5 profile)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    eye_l, eye_r = (x1 + 0.3 * w, y1 + 0.4 * h), (x1 + 0.7 * w, y1 + 0.4 * h)
    nose = (x1 + 0.5 * w + turn * 0.4 * w, y1 + 0.6 * h)
    return np.array(
        [eye_l, eye_r, nose, (x1 + 0.35 * w, y1 + 0.8 * h), (x1 + 0.65 * w, y1 + 0.8 * h)], np.float32
    )


def face(track_id: int, box: tuple[float, float, float, float], turn: float, blur: float, seed: int):  # type: ignore[no-untyped-def]
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = cv2.resize(TEXTURE[y1:y2, x1:x2], (16, 16), interpolation=cv2.INTER_AREA)
    if blur:
        crop = cv2.GaussianBlur(crop, (0, 0), blur)
    track = Track(track_id, np.array(box, np.float32), landmarks(box, turn), 0.9)
    enhanced = np.random.default_rng(seed).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    return track, EnhancedFace(track_id, enhanced, FaceCrop(track_id, crop, np.eye(2, 3), 16))


def result(index: int, faces: list) -> FrameResult:  # type: ignore[type-arg]
    frame = Frame(TEXTURE, index, index / 15, time.monotonic())
    return FrameResult(
        frame, TEXTURE, [t for t, _ in faces], [f for _, f in faces], StageTimes(), time.monotonic()
    )


def errors(registry: CollectorRegistry, kind: str) -> float:
    return registry.get_sample_value("facestream_timeline_errors_total", {"kind": kind}) or 0.0


def saved(registry: CollectorRegistry, camera: str = "cam") -> float:
    return registry.get_sample_value("facestream_timeline_faces_saved_total", {"camera": camera}) or 0.0


@pytest.fixture
def make(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    made: list[FaceTimeline] = []

    def build(root: Path = tmp_path / "data", **cfg: object) -> tuple[FaceTimeline, CollectorRegistry]:
        registry = CollectorRegistry()
        storage = StorageConfig(data_dir=str(root), **{"min_free_mb": 0, **cfg})  # type: ignore[arg-type]
        timeline = FaceTimeline(storage, TimelineMetrics(registry), run="test", retry_s=0.3, min_age_s=0)
        timeline.start()
        made.append(timeline)
        return timeline, registry

    yield build
    for t in made:
        t.close()


T0 = time.time() - 3600
"""Recent enough that retention keeps it."""
BOX_A = (40.0, 40.0, 88.0, 100.0)
BOX_B = (180.0, 60.0, 230.0, 120.0)


def test_keeps_the_best_faces_of_each_track_as_labelled_pngs(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    timeline, registry = make(faces_per_track=3)
    offered: dict[int, list[float]] = {1: [], 2: []}
    t0 = time.time() - 600
    for i in range(10):
        turn, blur = [0.45, 0.0, 0.3, 0.1, 0.2, 0.05, 0.4, 0.15, 0.35, 0.25][i], [0, 1.5, 0, 0.6, 2.5][i % 5]
        faces = [face(1, BOX_A, turn, blur, i), face(2, BOX_B, 0.5 - turn, blur, 100 + i)]
        for track, f in faces:
            offered[track.track_id].append(face_score(f, track)[0])
        timeline.offer("cam", result(i, faces), t0 + i, "bicubic")
    timeline.offer("cam", result(10, []), t0 + 10.5, "bicubic")  # both tracks end
    assert timeline.drain()

    page = timeline.query()
    assert [item["track_id"] for item in page["items"]] == [2, 1] or [
        item["track_id"] for item in page["items"]
    ] == [1, 2]
    for item in page["items"]:
        kept = [f["score"] for f in item["faces"]]
        best = sorted(offered[item["track_id"]], reverse=True)[:3]
        assert kept == pytest.approx(best, abs=1e-4), (item["track_id"], kept, best)
        assert item["first_seen"] == t0 and item["last_seen"] == t0 + 9
        assert all(f["enhanced"] is True for f in item["faces"])
    assert page["note"] == NOTE and page["cameras"] == ["cam"]

    # The replaced faces are no longer listed but still readable, for a while.
    listed = {f["id"] for item in page["items"] for f in item["faces"]}
    replaced = [r for r in timeline.faces(list(range(1, 100))) if r["replaced"]]
    assert replaced and not listed & {r["id"] for r in replaced}
    assert all(timeline.path_of(r["id"], "enhanced") for r in replaced)
    assert timeline.prune(time.time()) == 0
    assert timeline.prune(time.time() + REPLACED_KEEP_S + 1) == len(replaced)
    assert timeline.faces([r["id"] for r in replaced]) == []
    files = sorted((tmp_path / "data" / "faces").rglob("*.png"))
    assert len(files) == 12, files  # 3 faces x 2 tracks x (enhanced + original); replaced ones deleted
    enhanced = Image.open(next(f for f in files if f.name.endswith("-enhanced.png")))
    assert enhanced.size == (128, 128)
    assert enhanced.text[PNG_KEYWORD].startswith("true") and enhanced.text["Description"] == NOTE
    original = Image.open(next(f for f in files if f.name.endswith("-original.png")))
    assert "not enhanced" in original.text["Description"] and original.size == (72, 90)  # box + 25% margins
    assert saved(registry) >= 6 and errors(registry, "io") == 0


def test_frontality_and_sharpness_order_faces() -> None:
    assert frontality(landmarks(BOX_A, 0.0)) == pytest.approx(1.0)
    assert frontality(landmarks(BOX_A, 0.5)) < 0.25 < frontality(landmarks(BOX_A, 0.2))
    sharp = face_score(*reversed(face(1, BOX_A, 0.0, 0, 0)))[0]  # type: ignore[misc]
    blurred = face_score(*reversed(face(1, BOX_A, 0.0, 2.0, 0)))[0]  # type: ignore[misc]
    assert sharp > 2 * blurred


def test_a_reused_face_is_not_offered_twice(make) -> None:  # type: ignore[no-untyped-def]
    """With a per-frame engine budget, a track shows its last enhanced face again: same array."""
    timeline, registry = make()
    track, f = face(1, BOX_A, 0.0, 0, 0)
    for i in range(5):
        timeline.offer("cam", result(i, [(track, f)]), T0 + i, "bicubic")
    assert timeline.drain() and saved(registry) == 1


def test_a_track_is_kept_only_once_it_lived_half_a_second(make) -> None:  # type: ignore[no-untyped-def]
    timeline, registry = make()
    timeline.min_age_s = 0.5
    timeline.offer("cam", result(0, [face(1, BOX_A, 0.0, 0, 0)]), T0, "bicubic")
    timeline.offer("cam", result(1, []), T0 + 0.1, "bicubic")  # a blip: gone after 0.1 s
    for i in range(4):
        timeline.offer("cam", result(i, [face(2, BOX_B, 0.0, 0, 10 + i)]), T0 + 0.2 * i, "bicubic")
    assert timeline.drain() and saved(registry) == 1
    assert [item["track_id"] for item in timeline.query()["items"]] == [2]


def test_pages_filter_by_camera_and_time(make) -> None:  # type: ignore[no-untyped-def]
    timeline, _ = make()
    for n in range(7):
        cam = "gate" if n % 2 else "lobby"
        timeline.offer(cam, result(n, [face(n, BOX_A, 0.0, 0, n)]), T0 + 10 * n, "bicubic")
        timeline.offer(cam, result(n, []), T0 + 1 + 10 * n, "bicubic")
    assert timeline.drain()
    seen, cursor = [], None
    while True:
        page = timeline.query(limit=3, cursor=cursor)
        seen += [item["track_id"] for item in page["items"]]
        cursor = page["next"] and tuple(float(x) for x in page["next"].split(":"))
        if cursor is None:
            break
        cursor = (cursor[0], int(cursor[1]))
    assert seen == [6, 5, 4, 3, 2, 1, 0]
    assert [i["track_id"] for i in timeline.query(camera="gate")["items"]] == [5, 3, 1]
    assert [i["track_id"] for i in timeline.query(since=T0 + 20, until=T0 + 40)["items"]] == [4, 3, 2]
    assert timeline.query(camera="nowhere")["items"] == []


def test_retention_by_age_and_size(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    timeline, _ = make(max_age_days=1.0, max_size_mb=1)
    now = time.time()
    for n in range(40):  # 40 faces of about 50 kB of noise each: about 2 MB, twice the limit
        wall = now - 3 * 86400 if n < 5 else now - 3600 + n
        timeline.offer("cam", result(n, [face(n, BOX_A, 0.0, 0, n)]), wall, "bicubic")
        timeline.offer("cam", result(n, []), wall + 0.6, "bicubic")
    assert timeline.drain()
    removed = timeline.prune(now)
    db = sqlite3.connect(tmp_path / "data" / "faces.db")
    rows = db.execute("SELECT seen, bytes FROM faces ORDER BY seen").fetchall()
    size = rows[0][1]
    assert removed >= 20 and len(rows) == 1024 * 1024 // size  # as many as fit, and not one more
    # The newest ones are kept; the five older than the age limit went first.
    assert [s for s, _ in rows] == pytest.approx([now - 3600 + n for n in range(40 - len(rows), 40)])
    on_disk = list((tmp_path / "data" / "faces").rglob("*.png"))
    assert len(on_disk) == 2 * len(rows)
    assert db.execute("SELECT count(*) FROM tracks").fetchone()[0] == len(rows)


def test_a_timeline_from_before_replaced_faces_is_upgraded(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    root.mkdir()
    old = sqlite3.connect(root / "faces.db")
    old.executescript(SCHEMA.replace(",\n    replaced REAL", ""))
    old.close()
    timeline, registry = make(root, faces_per_track=1)
    for i in range(3):  # ever sharper: each replaces the one before
        timeline.offer("cam", result(i, [face(1, BOX_A, 0.0, 2.0 - i, i)]), T0 + i, "bicubic")
    assert timeline.drain() and saved(registry) == 3 and errors(registry, "io") == 0
    assert len(timeline.query()["items"][0]["faces"]) == 1
    assert [r["replaced"] for r in timeline.faces([1, 2, 3])] == [True, True, False]


def test_a_deleted_data_folder_is_recreated(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    timeline, registry = make()
    timeline.offer("cam", result(0, [face(1, BOX_A, 0.0, 0, 0)]), T0, "bicubic")
    assert timeline.drain() and saved(registry) == 1
    shutil.rmtree(tmp_path / "data")
    for n in range(2, 12):
        timeline.offer("cam", result(n, [face(n, BOX_A, 0.0, 0, n)]), T0 + n, "bicubic")
        timeline.drain()
        time.sleep(0.1)
    assert errors(registry, "missing_dir") >= 1
    assert timeline.healthy and saved(registry) >= 3
    assert (tmp_path / "data" / "faces.db").is_file() and timeline.query()["items"]


def test_a_corrupt_database_is_moved_aside(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    root.mkdir()
    (root / "faces.db").write_bytes(b"this is not a database" * 300)
    timeline, registry = make(root)
    for n in range(6):
        timeline.offer("cam", result(n, [face(n, BOX_A, 0.0, 0, n)]), T0 + n, "bicubic")
        timeline.drain()
        time.sleep(0.15)
    assert errors(registry, "corrupt_db") == 1
    aside = list(root.glob("faces.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert timeline.healthy and len(timeline.query()["items"]) >= 3


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB file system (tmpfs), filled up by the test."""
    where = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(where, "3m"):
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=10)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_is_counted_and_recovered_from(make, tiny_disk: Path) -> None:  # type: ignore[no-untyped-def]
    timeline, registry = make(tiny_disk / "data")
    timeline.offer("cam", result(0, [face(1, BOX_A, 0.0, 0, 0)]), T0, "bicubic")
    assert timeline.drain() and saved(registry) == 1
    filler = fill(tiny_disk)
    for n in range(2, 10):
        timeline.offer("cam", result(n, [face(n, BOX_A, 0.0, 0, n)]), T0 + n, "bicubic")
        timeline.drain()
    assert errors(registry, "disk_full") >= 1 and not timeline.healthy
    filler.unlink()
    for n in range(10, 20):
        timeline.offer("cam", result(n, [face(n, BOX_A, 0.0, 0, n)]), T0 + n, "bicubic")
        timeline.drain()
        time.sleep(0.1)
    assert timeline.healthy and saved(registry) >= 3
    assert not list((tiny_disk / "data").rglob("*.tmp"))  # no half-written files left behind


def test_a_hung_disk_never_stalls_the_camera_thread(make) -> None:  # type: ignore[no-untyped-def]
    """The writer is stuck (its database lock held, as by a disk that does not answer): offers
    still return at once, and what does not fit in the queue is dropped and counted."""
    timeline, registry = make()
    timeline.offer("cam", result(0, [face(0, BOX_A, 0.0, 0, 0)]), T0, "bicubic")
    assert timeline.drain()
    frames = [result(n, [face(n, BOX_A, 0.0, 0, n)]) for n in range(1, QUEUE_MAX + 40)]
    with timeline._db_lock:
        start = time.monotonic()
        for n, r in enumerate(frames, 1):
            timeline.offer("cam", r, T0 + n, "bicubic")
        elapsed = time.monotonic() - start
        dropped = registry.get_sample_value("facestream_timeline_dropped_total")
    assert elapsed < 10.0, elapsed  # about 0.4 ms of CPU each; nothing waited for the writer
    assert dropped is not None and dropped >= 30
    # Each frame queued a new face and the end of the previous track: half the queue is faces.
    assert timeline.drain(30) and saved(registry) >= QUEUE_MAX // 2 - 10


def test_label_marks_the_corner_of_a_frame() -> None:
    frame = np.full((360, 640, 3), 200, np.uint8)
    label_frame(frame)
    corner = frame[330:, :200]
    assert corner.min() < 80 and corner.max() > 230  # dark box, white (antialiased) text
    assert (frame[:300] == 200).all() and (frame[:, 400:] == 200).all()  # only the corner changed


def test_default_data_dir_follows_xdg() -> None:
    assert default_data_dir({"XDG_DATA_HOME": "/x/share", "HOME": "/h"}) == "/x/share/facestream"
    assert default_data_dir({"HOME": "/h"}) == "/h/.local/share/facestream"
