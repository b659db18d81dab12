"""The custom resources that place facestream's actors, and nothing else, so that importing it
costs nothing.

Actors ask for one unit of these and for no CPU at all: fractional CPU requests that added up to
more than a node had left actors pending forever (twice, in the tests). A node says how many
cameras and engine replicas it can run when it joins: `ray start --resources
'{"facestream_camera": 4, "facestream_engine": 1}'`."""

CAMERA = "facestream_camera"
ENGINE = "facestream_engine"
