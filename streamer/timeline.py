"""The face timeline: for each track, its few best enhanced faces with the original crop beside
them, kept in a data folder (SQLite through the standard library, plus PNG files) under limits
of age and size.

Live video must never wait for a disk. `offer` runs on the camera thread and only does
arithmetic on 16-32 px crops and a bounded, non-blocking queue put; everything that touches the
disk happens on one writer thread. A full disk, a deleted data folder or a corrupt database is
logged, counted in /metrics (`facestream_timeline_errors_total{kind}`) and retried every
RETRY_S: the folder and database are recreated, a corrupt database is moved aside (kept for
inspection) and a fresh one started, and writing resumes when the disk has room again.

"Best" is `score`: frontal x sharp x big enough. Frontality comes from the five landmarks (the
nose's offset from the eyes' midline), sharpness from the variance of the Laplacian of the crop
the engine saw, and faces smaller than the engine's input count for less, because the model
invents more of them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from streamer.config import StorageConfig
from streamer.provenance import NOTE, enhanced_png, png_bytes
from streamer.types import EnhancedFace, FrameResult, Track

log = logging.getLogger(__name__)

DB_NAME = "faces.db"
FACES_DIR = "faces"
QUEUE_MAX = 256
MIN_GAP_S = 0.5
"""A track offers at most one new face this often: a slowly improving score is no reason to
write a file per frame."""
SEEN_FLUSH_S = 2.0
RETRY_S = 5.0
PRUNE_EVERY_S = 60.0
MIN_AGE_S = 0.5
"""A track is first offered once it has lived this long: shorter ones are mostly false detections,
and a new track's enhanced face is still converging (temporal smoothing starts from the prior's
mean face, a blank beige face)."""
SHARP_HALF = 2000.0
"""Laplacian variance at which the sharpness factor is 0.5. Measured on the demo camera's 16 px
crops (x8 engine, 640x360): about 2,400 (motion-blurred) to 9,000."""
ORIGINAL_MARGIN = 0.25
REPLACED_KEEP_S = 600.0
"""A face that a better one of its track replaced stays readable (image, download) this long,
though no longer listed: an operator who picked it from a page a minute ago still gets it."""
MAX_PAGE = 200

SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL,
    camera TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    UNIQUE (run, camera, track_id)
);
CREATE INDEX IF NOT EXISTS tracks_seen ON tracks (last_seen, id);
CREATE INDEX IF NOT EXISTS tracks_camera_seen ON tracks (camera, last_seen, id);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    track INTEGER NOT NULL REFERENCES tracks (id),
    seen REAL NOT NULL,
    score REAL NOT NULL,
    frontal REAL NOT NULL,
    sharpness REAL NOT NULL,
    engine TEXT NOT NULL,
    enhanced_file TEXT NOT NULL,
    original_file TEXT NOT NULL,
    enhanced_size INTEGER NOT NULL,
    original_w INTEGER NOT NULL,
    original_h INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    replaced REAL
);
CREATE INDEX IF NOT EXISTS faces_track ON faces (track, score);
CREATE INDEX IF NOT EXISTS faces_seen ON faces (seen);
"""


def default_data_dir(env: Mapping[str, str]) -> str:
    """$XDG_DATA_HOME/facestream, else ~/.local/share/facestream (the XDG base directory rule)."""
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "share")
    return str(Path(base) / "facestream")


class TimelineMetrics:
    """The timeline's series, in the server's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.saved = Counter(
            "facestream_timeline_faces_saved", "Faces written to the timeline", ["camera"], registry=registry
        )
        self.errors = Counter(
            "facestream_timeline_errors",
            "Timeline failures (disk_full, io, corrupt_db, missing_dir, db); live video goes on",
            ["kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "facestream_timeline_dropped",
            "Faces not written because the timeline was failing or its queue was full",
            registry=registry,
        )
        self.healthy = Gauge(
            "facestream_timeline_healthy",
            "1 while the timeline writes, 0 while it is failing",
            registry=registry,
        )
        self.stored_bytes = Gauge(
            "facestream_timeline_bytes", "Bytes of face images kept in the timeline", registry=registry
        )
        for kind in ("disk_full", "io", "corrupt_db", "missing_dir", "db"):
            self.errors.labels(kind)


# -- choosing faces --------------------------------------------------------------------------------
def frontality(landmarks: np.ndarray) -> float:
    """1 for a face looking at the camera, toward 0 in profile: the nose's offset from the eyes'
    midpoint along the eye line, relative to the eye distance (about 0.5 in full profile)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eyes = lm[1] - lm[0]
    dist = float(np.hypot(*eyes))
    if dist < 1e-6:
        return 0.0
    offset = float(np.dot(lm[2] - (lm[0] + lm[1]) / 2, eyes / dist)) / dist
    return float(np.clip(1.0 - 2.0 * abs(offset), 0.0, 1.0))


def sharpness(crop: np.ndarray) -> float:
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def face_score(face: EnhancedFace, track: Track) -> tuple[float, float, float]:
    """(score, frontal, sharpness) of one enhanced face."""
    frontal = frontality(track.landmarks)
    sharp = sharpness(face.crop.image)
    side = float(min(track.box[2] - track.box[0], track.box[3] - track.box[1]))
    size = min(1.0, side / face.crop.size)
    return frontal * (sharp / (sharp + SHARP_HALF)) * size, frontal, sharp


def original_crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The camera's own pixels around a face box (with a margin), never resampled."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * ORIGINAL_MARGIN, (y2 - y1) * ORIGINAL_MARGIN
    a, b = max(0, int(x1 - mx)), max(0, int(y1 - my))
    c, d = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    return image[b:d, a:c].copy()


@dataclass
class Candidate:
    """One face worth keeping, copied off the frame path."""

    camera: str
    track_id: int
    first_seen: float
    seen: float
    score: float
    frontal: float
    sharpness: float
    engine: str
    enhanced: np.ndarray
    original: np.ndarray


@dataclass
class _TrackState:
    first_seen: float
    last_seen: float
    best: list[float] = field(default_factory=list)
    last_offer: float = 0.0
    last_flush: float = 0.0
    last_image: np.ndarray | None = None


@dataclass
class _Seen:
    camera: str
    track_id: int
    first_seen: float
    last_seen: float


class TimelineError(Exception):
    """A write failed; `kind` is the /metrics label."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# -- the timeline ----------------------------------------------------------------------------------
class FaceTimeline:
    """One per server, shared by its cameras. `offer` from camera threads; `query`, `faces` and
    `path_of` from any thread (each opens its own read connection)."""

    def __init__(
        self,
        cfg: StorageConfig,
        metrics: TimelineMetrics | None = None,
        run: str | None = None,
        retry_s: float = RETRY_S,
        min_age_s: float = MIN_AGE_S,
    ) -> None:
        self.cfg = cfg
        self.root = Path(cfg.data_dir).expanduser()
        self.db_path = self.root / DB_NAME
        self.metrics = metrics
        self.run = run or time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        self._queue: queue.Queue[Candidate | _Seen | None] = queue.Queue(QUEUE_MAX)
        self._tracks: dict[tuple[str, int], _TrackState] = {}
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._inode = 0
        self._retry_at = 0.0
        self._last_prune = 0.0
        self._failures: dict[str, int] = {}
        self.retry_s = retry_s
        self.min_age_s = min_age_s
        self.healthy = True
        self._set_healthy(True)

    # -- camera side ------------------------------------------------------------------------
    def offer(self, camera: str, result: FrameResult, wall: float, engine: str) -> None:
        """Called by a camera thread after each frame; never blocks and never raises."""
        try:
            self._offer(camera, result, wall, engine)
        except Exception:  # the frame path must not die for the timeline's sake
            log.exception("timeline: offer failed for camera %s", camera)

    def _offer(self, camera: str, result: FrameResult, wall: float, engine: str) -> None:
        tracks = {int(t.track_id): t for t in result.tracks}
        with self._lock:
            for face in result.faces:
                track = tracks.get(int(face.track_id))
                if track is None:
                    continue
                key = (camera, int(face.track_id))
                state = self._tracks.get(key)
                if state is None:
                    state = self._tracks[key] = _TrackState(wall, wall)
                state.last_seen = wall
                if wall - state.first_seen < self.min_age_s or wall - state.last_offer < MIN_GAP_S:
                    continue
                if face.image is state.last_image:
                    continue  # the engine reused this track's newest face (its per-frame budget)
                state.last_image = face.image
                score, frontal, sharp = face_score(face, track)
                keep = self.cfg.faces_per_track
                if len(state.best) >= keep and score <= state.best[-1]:
                    continue
                state.best = sorted([*state.best, score], reverse=True)[:keep]
                state.last_offer = state.last_flush = wall
                self._put(
                    Candidate(
                        camera,
                        key[1],
                        state.first_seen,
                        wall,
                        score,
                        frontal,
                        sharp,
                        engine,
                        np.ascontiguousarray(face.image).copy(),
                        original_crop(result.frame.image, track.box),
                    )
                )
            for key, state in list(self._tracks.items()):
                if key[0] != camera:
                    continue
                gone = key[1] not in tracks
                if state.best and (gone or wall - state.last_flush >= SEEN_FLUSH_S):
                    state.last_flush = wall
                    self._put(_Seen(camera, key[1], state.first_seen, state.last_seen))
                if gone:
                    del self._tracks[key]

    def _put(self, item: Candidate | _Seen) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if self.metrics is not None:
                self.metrics.dropped.inc()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="timeline-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything offered so far has been handled (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    # -- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item: Candidate | _Seen | object | None
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = _IDLE
            try:
                if item is None:
                    return
                self._handle(item)
            finally:
                if item is not _IDLE:
                    self._queue.task_done()

    def _handle(self, item: Candidate | _Seen | object) -> None:
        now = time.time()
        if now < self._retry_at:
            if isinstance(item, Candidate) and self.metrics is not None:
                self.metrics.dropped.inc()
            return
        try:
            with self._db_lock:
                conn = self._connection()
                if isinstance(item, Candidate):
                    self._write_face(conn, item)
                elif isinstance(item, _Seen):
                    self._update_seen(conn, item)
                if now - self._last_prune >= PRUNE_EVERY_S:
                    self._last_prune = now
                    self._prune(conn, now)
            if not self.healthy:
                log.info("timeline: writing again to %s", self.root)
            self._set_healthy(True)
        except Exception as exc:
            self._failed(exc, item)

    def _failed(self, exc: Exception, item: object) -> None:
        kind = _kind_of(exc)
        count = self._failures[kind] = self._failures.get(kind, 0) + 1
        if self.metrics is not None:
            self.metrics.errors.labels(kind).inc()
            if isinstance(item, Candidate):
                self.metrics.dropped.inc()
        if count in (1, 10) or count % 100 == 0:
            log.error("timeline: %s (%s, %d so far); live video goes on, retrying", exc, kind, count)
        if kind == "corrupt_db":
            self._set_aside_corrupt()
        elif self._conn is not None and kind != "disk_full":
            self._conn.close()
            self._conn = None
        self._retry_at = time.time() + self.retry_s
        self._set_healthy(False)

    def _set_healthy(self, ok: bool) -> None:
        self.healthy = ok
        if self.metrics is not None:
            self.metrics.healthy.set(1 if ok else 0)

    def _connection(self) -> sqlite3.Connection:
        """The open database, reopened when its file went away (a deleted data folder: SQLite
        would otherwise go on writing into an unlinked file)."""
        if self._conn is not None:
            try:
                inode = self.db_path.stat().st_ino
            except FileNotFoundError:
                inode = -1
            if inode == self._inode:
                return self._conn
            self._conn.close()
            self._conn = None
            raise TimelineError("missing_dir", f"{self.db_path} was deleted; starting a new timeline")
        self.root.mkdir(parents=True, exist_ok=True)
        conn = _open(self.db_path)
        self._conn, self._inode = conn, self.db_path.stat().st_ino
        return conn

    def _set_aside_corrupt(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{self.db_path}{suffix}")
            with contextlib.suppress(OSError):
                path.rename(f"{self.db_path}.corrupt-{stamp}{suffix}")
        log.error("timeline: corrupt database moved aside to %s.corrupt-%s", self.db_path, stamp)

    def _write_face(self, conn: sqlite3.Connection, c: Candidate) -> None:
        free = shutil.disk_usage(self.root).free
        if free < self.cfg.min_free_mb * 1024 * 1024:
            raise TimelineError("disk_full", f"only {free // 2**20} MB free on {self.root}")
        day = time.strftime("%Y-%m-%d", time.localtime(c.seen))
        folder = self.root / FACES_DIR / _safe(c.camera) / day
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self.run}-{c.track_id}-{int(c.seen * 1000)}"
        enhanced = enhanced_png(c.enhanced, c.engine)
        original = png_bytes(c.original, {"Description": "original camera pixels (not enhanced)"})
        paths = (folder / f"{stem}-enhanced.png", folder / f"{stem}-original.png")
        try:
            for path, data in zip(paths, (enhanced, original), strict=True):
                _write_file(path, data)
            with conn:
                track = self._track_row(conn, c.camera, c.track_id, c.first_seen, c.seen)
                oh, ow = c.original.shape[:2]
                conn.execute(
                    "INSERT INTO faces (track, seen, score, frontal, sharpness, engine, enhanced_file, "
                    "original_file, enhanced_size, original_w, original_h, bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        track,
                        c.seen,
                        c.score,
                        c.frontal,
                        c.sharpness,
                        c.engine,
                        str(paths[0].relative_to(self.root)),
                        str(paths[1].relative_to(self.root)),
                        int(c.enhanced.shape[0]),
                        ow,
                        oh,
                        len(enhanced) + len(original),
                    ),
                )
                evicted = conn.execute(
                    "SELECT id FROM faces WHERE track = ? AND replaced IS NULL "
                    "ORDER BY score DESC, id DESC LIMIT -1 OFFSET ?",
                    (track, self.cfg.faces_per_track),
                ).fetchall()
                now = time.time()
                conn.executemany("UPDATE faces SET replaced = ? WHERE id = ?", [(now, r[0]) for r in evicted])
        except BaseException:
            for path in paths:
                path.unlink(missing_ok=True)
            raise
        if self.metrics is not None:
            self.metrics.saved.labels(c.camera).inc()

    def _track_row(
        self, conn: sqlite3.Connection, camera: str, track_id: int, first: float, last: float
    ) -> int:
        conn.execute(
            "INSERT INTO tracks (run, camera, track_id, first_seen, last_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (run, camera, track_id) DO UPDATE SET "
            "first_seen = min(first_seen, excluded.first_seen), "
            "last_seen = max(last_seen, excluded.last_seen)",
            (self.run, camera, track_id, first, last),
        )
        row = conn.execute(
            "SELECT id FROM tracks WHERE run = ? AND camera = ? AND track_id = ?",
            (self.run, camera, track_id),
        ).fetchone()
        return int(row[0])

    def _update_seen(self, conn: sqlite3.Connection, s: _Seen) -> None:
        with conn:
            conn.execute(
                "UPDATE tracks SET first_seen = min(first_seen, ?), last_seen = max(last_seen, ?) "
                "WHERE run = ? AND camera = ? AND track_id = ?",
                (s.first_seen, s.last_seen, self.run, s.camera, s.track_id),
            )

    def _remove_files(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(OSError):
                (self.root / name).unlink()

    def prune(self, now: float | None = None) -> int:
        """Apply the age and size limits (oldest faces first) and drop faces replaced more than
        REPLACED_KEEP_S ago, now; returns how many faces went. The writer does this by itself
        every PRUNE_EVERY_S."""
        with self._db_lock:
            return self._prune(self._connection(), time.time() if now is None else now)

    def _prune(self, conn: sqlite3.Connection, now: float) -> int:
        cutoff = now - self.cfg.max_age_days * 86400
        replaced_cutoff = now - REPLACED_KEEP_S
        room = self.cfg.max_size_mb * 1024 * 1024
        kept, removed = 0, []
        for fid, enh, orig, size, seen, replaced in conn.execute(
            "SELECT id, enhanced_file, original_file, bytes, seen, replaced FROM faces "
            "ORDER BY seen DESC, id DESC"
        ).fetchall():
            if seen < cutoff or kept + size > room or (replaced is not None and replaced < replaced_cutoff):
                removed.append((fid, enh, orig))
            else:
                kept += size
        with conn:
            conn.executemany("DELETE FROM faces WHERE id = ?", [(r[0],) for r in removed])
            conn.execute("DELETE FROM tracks WHERE id NOT IN (SELECT DISTINCT track FROM faces)")
        self._remove_files([f for r in removed for f in r[1:]])
        if self.metrics is not None:
            self.metrics.stored_bytes.set(kept)
        if removed:
            log.info("timeline: retention removed %d face(s)", len(removed))
        return len(removed)

    # -- reading ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        if not self.db_path.exists():
            yield None
            return
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            ready = conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('faces', 'tracks')")
            yield conn if ready.fetchone()[0] == 2 else None
        finally:
            conn.close()

    def query(
        self,
        camera: str = "",
        since: float = 0.0,
        until: float = 0.0,
        limit: int = 50,
        cursor: tuple[float, int] | None = None,
    ) -> dict[str, Any]:
        """Tracks seen in [since, until] (0: open), newest first, each with its kept faces best
        first; `next` is the cursor of the following page (None on the last)."""
        limit = max(1, min(MAX_PAGE, limit))
        where = ["EXISTS (SELECT 1 FROM faces f WHERE f.track = t.id AND f.replaced IS NULL)"]
        args: list[object] = []
        if camera:
            where.append("t.camera = ?")
            args.append(camera)
        if since:
            where.append("t.last_seen >= ?")
            args.append(since)
        if until:
            where.append("t.first_seen <= ?")
            args.append(until)
        if cursor is not None:
            where.append("(t.last_seen < ? OR (t.last_seen = ? AND t.id < ?))")
            args.extend([cursor[0], cursor[0], cursor[1]])
        with self._reader() as conn:
            if conn is None:
                return {"items": [], "next": None, "cameras": [], "note": NOTE}
            rows = conn.execute(
                "SELECT t.id, t.camera, t.track_id, t.first_seen, t.last_seen FROM tracks t "
                f"WHERE {' AND '.join(where)} ORDER BY t.last_seen DESC, t.id DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            faces: dict[int, list[dict[str, Any]]] = {r[0]: [] for r in rows}
            if rows:
                marks = ",".join("?" * len(rows))
                for f in conn.execute(
                    f"SELECT {_FACE_COLUMNS} FROM faces WHERE track IN ({marks}) AND replaced IS NULL "
                    "ORDER BY score DESC, id",
                    [r[0] for r in rows],
                ):
                    faces[f[1]].append(_face_json(f))
            cameras = [r[0] for r in conn.execute("SELECT DISTINCT camera FROM tracks ORDER BY camera")]
        items = [
            {
                "track": r[0],
                "camera": r[1],
                "track_id": r[2],
                "first_seen": r[3],
                "last_seen": r[4],
                "faces": faces[r[0]],
            }
            for r in rows
        ]
        nxt = f"{rows[-1][4]!r}:{rows[-1][0]}" if more else None
        return {"items": items, "next": nxt, "cameras": cameras, "note": NOTE}

    def faces(self, ids: list[int]) -> list[dict[str, Any]]:
        """Face records (with their track's camera and times) by id, for downloads; a face that a
        better one replaced within REPLACED_KEEP_S is still here, marked `replaced`."""
        if not ids:
            return []
        with self._reader() as conn:
            if conn is None:
                return []
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"SELECT {_FACE_COLUMNS}, t.camera, t.track_id, t.first_seen, t.last_seen, "
                f"enhanced_file, original_file, replaced FROM faces JOIN tracks t ON t.id = faces.track "
                f"WHERE faces.id IN ({marks}) ORDER BY faces.id",
                ids,
            ).fetchall()
        out = []
        for r in rows:
            rec = _face_json(r[:9])
            rec.update(
                camera=r[9],
                track_id=r[10],
                first_seen=r[11],
                last_seen=r[12],
                files={"enhanced": r[13], "original": r[14]},
                replaced=r[15] is not None,
            )
            out.append(rec)
        return out

    def path_of(self, face_id: int, kind: str) -> Path | None:
        """The enhanced or original PNG of a face, if both its record and its file exist."""
        column = {"enhanced": "enhanced_file", "original": "original_file"}[kind]
        with self._reader() as conn:
            row = (
                None
                if conn is None
                else conn.execute(f"SELECT {column} FROM faces WHERE id = ?", (face_id,)).fetchone()
            )
        if row is None:
            return None
        path = self.root / row[0]
        return path if path.is_file() else None


_IDLE = object()
_FACE_COLUMNS = (
    "faces.id, track, seen, score, frontal, sharpness, engine, enhanced_size, original_w || 'x' || original_h"
)


def _face_json(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": r[0],
        "seen": r[2],
        "score": round(float(r[3]), 4),
        "frontal": round(float(r[4]), 3),
        "sharpness": round(float(r[5]), 1),
        "engine": r[6],
        "enhanced_size": r[7],
        "original_size": r[8],
        "enhanced": True,
        "enhanced_url": f"/api/faces/{r[0]}/enhanced.png",
        "original_url": f"/api/faces/{r[0]}/original.png",
    }


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        if "replaced" not in {row[1] for row in conn.execute("PRAGMA table_info(faces)")}:
            conn.execute("ALTER TABLE faces ADD COLUMN replaced REAL")  # a timeline from before it
        conn.execute("SELECT count(*) FROM faces").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def _write_file(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader never sees half a PNG."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "camera"


def _kind_of(exc: Exception) -> str:
    if isinstance(exc, TimelineError):
        return exc.kind
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return "disk_full"
        if exc.errno == errno.ENOENT:
            return "missing_dir"
        return "io"
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc).lower()
        if "full" in text:
            return "disk_full"
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return "corrupt_db"
        if "readonly" in text or "disk i/o" in text or "unable to open" in text:
            return "missing_dir"
        return "db"
    return "io"
