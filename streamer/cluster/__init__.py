"""facestream on a Ray cluster (`run.py serve --ray ADDRESS|auto`).

Each camera is a Ray actor (camera_actor.py) that runs what one machine's camera thread runs:
ingest, detection, tracking, cropping, compositing and the shared encoders. The FSR engine is a
Ray Serve deployment (engine_service.py) whose replicas batch the face crops of all cameras in
one engine call; a camera sends it crops (a few KB), never frames, and never waits for it
(overlap.py). The head process keeps the dashboard, signaling and metrics (head.py): it pulls
each camera's encoded packets and per-frame metadata and feeds them to the same packet fan-out
the single-machine server uses.

Nothing here is imported unless `--ray` is given: Ray is an optional extra
(requirements-cluster.txt).
"""
