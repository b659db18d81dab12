"""The errors a user can cause (bad path, bad URL, bad model file), collected so the CLI prints
them as one line instead of a traceback. Each stage defines its own error next to its code."""

from __future__ import annotations

from engines.backends import BackendUnavailable
from streamer.config import ConfigError
from streamer.detectors.base import DetectorError
from streamer.sink import SinkError
from streamer.sources import SourceError

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    SourceError,
    DetectorError,
    SinkError,
    FileNotFoundError,
    BackendUnavailable,
)
