"""Development tools the tests and benchmarks run: a WebRTC viewer process and an RTSP server.

Not part of the installed package: nothing here runs in production."""
