"""Prometheus metrics for the server, in a registry owned by one app.

A per-app CollectorRegistry (not the process-global default) lets tests and benchmarks start
several servers in one process without "duplicated timeseries" errors, and keeps /metrics to
exactly what this server measures. prometheus_client is thread-safe, so the camera threads
update it directly. What must stay true while no frame arrives (fps, up, frame age) is read from
the camera at scrape time instead of being set per frame.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from streamer.types import FrameResult

STAGE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.fps = Gauge(
            "facestream_camera_fps",
            "Frames per second published by the camera's pipeline (decays to 0 without frames)",
            ["camera"],
            registry=r,
        )
        self.up = Gauge(
            "facestream_camera_up",
            "1 while the camera's source is live and frames flow",
            ["camera"],
            registry=r,
        )
        self.frame_age = Gauge(
            "facestream_camera_last_frame_age_seconds",
            "Seconds since the camera published its newest frame (since start before the first)",
            ["camera"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "facestream_stage_seconds",
            "Time per frame spent in each pipeline stage",
            ["camera", "stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.capture_to_publish = Histogram(
            "facestream_capture_to_publish_seconds",
            "From source capture to the result being ready for the encoders (server side of the latency)",
            ["camera"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.faces = Gauge("facestream_faces", "Tracked faces in the newest frame", ["camera"], registry=r)
        self.frames = Counter(
            "facestream_frames_processed", "Frames processed by the pipeline", ["camera"], registry=r
        )
        self.dropped = Counter(
            "facestream_frames_dropped",
            "Source frames dropped because the pipeline was busy (newest wins)",
            ["camera"],
            registry=r,
        )
        self.errors = Counter(
            "facestream_pipeline_errors", "Frames whose processing raised an error", ["camera"], registry=r
        )
        self.viewers = Gauge(
            "facestream_viewers", "Peer connections watching the camera", ["camera"], registry=r
        )
        self.encoding = Gauge(
            "facestream_track_encoding",
            "1 while the camera's track (enhanced, original) is encoded for somebody who shows it",
            ["camera", "track"],
            registry=r,
        )
        self.peers = Gauge("facestream_peer_connections", "Connected WebRTC peer connections", registry=r)
        self.pending = Gauge(
            "facestream_pending_offers", "Answered offers whose peer has not connected yet", registry=r
        )
        self.rejected = Counter(
            "facestream_peer_rejections",
            "Offers refused by the peer caps, or displaced from the pending hold (pending_evicted)",
            ["reason"],
            registry=r,
        )
        self._dropped_seen: dict[str, int] = {}

    def add_camera(
        self,
        camera: str,
        fps: Callable[[], float],
        up: Callable[[], float],
        frame_age: Callable[[], float],
        encoding: dict[str, Callable[[], float]],
    ) -> None:
        """Create the camera's series so dashboards see it before the first frame; the health
        gauges call back into the camera when scraped."""
        for metric in (self.faces, self.frames, self.dropped, self.errors, self.viewers):
            metric.labels(camera)
        self.fps.labels(camera).set_function(fps)
        self.up.labels(camera).set_function(up)
        self.frame_age.labels(camera).set_function(frame_age)
        for track, is_encoding in encoding.items():
            self.encoding.labels(camera, track).set_function(is_encoding)
        self._dropped_seen[camera] = 0

    def observe(
        self, camera: str, result: FrameResult, capture_to_publish_s: float, dropped_total: int
    ) -> None:
        """`dropped_total` is the source's running count; the counter advances by the difference."""
        self.faces.labels(camera).set(len(result.tracks))
        self.frames.labels(camera).inc()
        for stage, seconds in result.times.seconds.items():
            self.stage_seconds.labels(camera, stage).observe(seconds)
        self.capture_to_publish.labels(camera).observe(max(0.0, capture_to_publish_s))
        seen = self._dropped_seen.get(camera, 0)
        if dropped_total > seen:
            self.dropped.labels(camera).inc(dropped_total - seen)
            self._dropped_seen[camera] = dropped_total

    def render(self) -> bytes:
        return generate_latest(self.registry)
