"""facestream's streaming side: ingest, detect/track, align, composite, sinks and the WebRTC server."""
