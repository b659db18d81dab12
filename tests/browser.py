"""What the browser tests share: a real headless Chromium (devtools/browser.py) and a server
running in its own thread and event loop, because Selenium calls block."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from devtools.browser import chromium, have_chromium
from streamer.config import AppConfig
from streamer.server import RunningServer, start_server

__all__ = ["MARKS", "ServerThread", "chromium", "wait_for"]

MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not have_chromium(),
        reason="needs Debian chromium and chromium-driver (bash scripts/setup.sh --dev)",
    ),
]


class ServerThread:
    """start_server in a background event loop; `stop()` shuts it down from the test thread."""

    def __init__(self, cfg: AppConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.server: RunningServer | None = None
        self.error: BaseException | None = None
        self._cfg = cfg
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self.server is None:
            raise RuntimeError(f"server did not start: {self.error}")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(start_server(self._cfg))
        except BaseException as exc:  # surfaced by __init__
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


def wait_for(fn, timeout: float = 60.0, every: float = 0.25):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = fn()
    return value
