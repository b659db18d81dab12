"""Frame sources: files, RTSP, HTTP(S), V4L2 webcams (all through PyAV) and the built-in demo.

`open_source(cfg)` picks the implementation from the URI; everything returned follows the
`FrameSource` protocol, so the pipeline never needs to know which kind it reads.
"""

from __future__ import annotations

from streamer.config import SourceConfig
from streamer.sources.av_source import AvSource, classify
from streamer.sources.base import BaseSource, FrameQueue, FrameSource, SourceError, SourceStats
from streamer.sources.demo import DemoSource

__all__ = [
    "AvSource",
    "BaseSource",
    "DemoSource",
    "FrameQueue",
    "FrameSource",
    "SourceError",
    "SourceStats",
    "classify",
    "open_source",
]


def open_source(cfg: SourceConfig) -> FrameSource:
    """Build (not start) the source for `cfg.uri`: `demo` or anything PyAV can open."""
    if cfg.uri == "demo":
        return DemoSource(cfg)
    if not cfg.uri:
        raise SourceError(
            "source uri is empty; give a file path, rtsp:// or http(s):// URL, /dev/videoN or demo"
        )
    return AvSource(cfg)
