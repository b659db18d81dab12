"""Log lines that any client can trigger at will, at most once per interval each.

Without a token, a client can still send a bad header, a wrong token or a request that trips a
bug; logging every one of them lets it fill the disk and bury the lines that matter. Each message
template gets one line per interval, and the next line that gets through says how many were held
back. Client protocol errors (an over-long header, a malformed request line) are the client's
fault, not ours: they become one WARNING line without a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

INTERVAL_S = 60.0
MAX_DETAIL_CHARS = 200


class ThrottledLog(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that lets each message template through once per `interval_s`.

    It is also what aiohttp's request handler logs to (the `logger` handler argument), so its
    "Error handling request" lines are throttled the same way."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        key = str(msg)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            level, kwargs["exc_info"] = logging.WARNING, None
            detail = " ".join(str(exc.message).split())[:MAX_DETAIL_CHARS]
            msg, args = f"{msg}: HTTP %s %s", (*args, exc.code, detail)
        if held:
            msg = f"{msg} ({held} more like this in the last {self.interval_s:g} s not logged)"
        super().log(level, msg, *args, **kwargs)
