"""Joining the Ray cluster that `--ray` names and deploying the engine on it; every way that can
fail ends in one ConfigError line that says what to do (run.py prints it and exits 2)."""

from __future__ import annotations

import logging
import socket
from typing import Any

from streamer.cluster.resources import CAMERA, ENGINE
from streamer.config import AppConfig, ClusterConfig, ConfigError

log = logging.getLogger(__name__)

APP = "facestream"
DEPLOYMENT = "FaceEngine"
INSTALL_HINT = "pip install -r requirements-cluster.txt (or pip install '.[cluster]')"
START_HINT = (
    'start one with `ray start --head --resources \'{"facestream_camera": 4, "facestream_engine": 1}\'`'
    " or use --ray auto for a local one"
)


def import_ray() -> Any:
    try:
        import ray
        from ray import serve  # noqa: F401  # the deployment needs it; fail here, not later
    except ImportError:
        raise ConfigError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _reachable(address: str, timeout_s: float = 3.0) -> bool:
    """Whether anything listens at host:port (Ray's own connect retries for a minute and more
    before it gives up on an address that is not there)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--ray takes host:port (the head's GCS address, port 6379 by default) or auto, got {address!r}"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def connect(cfg: ClusterConfig, cameras: int) -> Any:
    """Join (or with `auto` start) the cluster and check it can place facestream's actors."""
    ray = import_ray()
    if cfg.ray == "auto":
        ray.init(
            resources={CAMERA: cameras, ENGINE: cfg.engine_replicas},
            include_dashboard=False,
            log_to_driver=False,
        )
    else:
        if not _reachable(cfg.ray):
            raise ConfigError(f"no Ray cluster at {cfg.ray}: {START_HINT}")
        try:
            ray.init(address=cfg.ray, log_to_driver=False)
        except ConnectionError as exc:
            raise ConfigError(f"cannot join the Ray cluster at {cfg.ray} ({exc}): {START_HINT}") from None
    offered = ray.cluster_resources()
    for name, needed in ((CAMERA, 1), (ENGINE, 0 if cfg.engine_per_camera else 1)):
        if offered.get(name, 0) < needed:
            raise ConfigError(
                f"the Ray cluster offers no {name!r} resource: start its nodes with "
                f'`ray start --resources \'{{"{CAMERA}": 4, "{ENGINE}": 1}}\'`'
            )
    return ray


def deploy_engine(cfg: AppConfig) -> None:
    """The FSR engine as a Serve application without an HTTP proxy (the head serves HTTP)."""
    from ray import serve

    from streamer.cluster.engine_service import FaceEngine

    c = cfg.cluster
    serve.start(proxy_location="Disabled")
    deployment = serve.deployment(
        name=DEPLOYMENT,
        num_replicas=c.engine_replicas,
        max_ongoing_requests=64,
        ray_actor_options={"num_cpus": 0, "resources": {ENGINE: 1}},
    )(FaceEngine)
    serve.run(deployment.bind(cfg.enhance, c.max_batch, c.batch_wait_ms / 1000), name=APP, route_prefix=None)
    log.info("engine deployed: %d replica(s), batches of up to %d frames", c.engine_replicas, c.max_batch)


def start(cfg: AppConfig) -> Any:
    """Everything `run.py serve --ray` needs before the server starts: the cluster, the engine
    (unless each camera runs its own) and the factory of the server's remote cameras."""
    connect(cfg.cluster, len(cfg.sources))
    from streamer.cluster.camera_actor import EngineRoute
    from streamer.cluster.head import camera_factory

    if cfg.cluster.engine_per_camera:
        return camera_factory(EngineRoute())
    deploy_engine(cfg)
    return camera_factory(EngineRoute(APP, DEPLOYMENT))
