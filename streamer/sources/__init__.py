"""Frame sources: files, RTSP, HTTP(S), V4L2 webcams (all through PyAV) and the built-in demo.

`open_source(cfg)` picks the implementation from the URI; everything returned follows the
`FrameSource` protocol, so the pipeline never needs to know which kind it reads.

Decisions on bad input, each covered by a test:
- a missing, empty, non-video or video-less file, a missing /dev/videoN, an unsupported scheme:
  SourceError with one line naming the source and the reason, raised by `start()` (or by
  `open_source` for the scheme);
- a live URL that cannot be opened at start: SourceError after at most `open_timeout_s` (a typo
  fails fast), unless `retry_at_start`; once a live source has run, losing it never raises: it
  re-opens with backoff and `read()` returns None on timeout meanwhile;
- a frame above `max_pixels` (e.g. a 100-megapixel image): downscaled to fit, one warning per
  size, counted in `stats.oversized_frames`;
- a resolution change mid-stream: frames of both sizes are delivered, counted;
- corrupt data: the packet is skipped and counted, the timestamp gap is counted as lost frames.
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


def open_source(cfg: SourceConfig, live: bool = False) -> FrameSource:
    """Build (not start) the source for `cfg.uri`: `demo` or anything PyAV can open.

    `live` (the app's live mode) paces the demo and files at their frame rate and makes them
    behave like cameras (newest frame wins); streams and webcams are live whatever it says.
    """
    if cfg.uri == "demo":
        return DemoSource(cfg, live)
    if not cfg.uri:
        raise SourceError(
            "source uri is empty; give a file path, rtsp:// or http(s):// URL, /dev/videoN or demo"
        )
    return AvSource(cfg, live)
