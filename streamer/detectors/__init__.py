"""Detector backends, imported lazily by `streamer.detect.build_detector`."""
