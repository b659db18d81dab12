"""The WebRTC re-streaming server and operator dashboard.

`serve(cfg)` runs it from the CLI; `start_server(cfg)` starts it inside a running event loop
(tests, benchmarks) and returns a `RunningServer` with `.url`, `.token` and `.stop()`.
"""

from streamer.server.lifecycle import RunningServer, serve, start_server

__all__ = ["RunningServer", "serve", "start_server"]
