from pathlib import Path

import av
import numpy as np
import pytest

from streamer.sink import Mp4Sink, SinkError


def _clip_with_audio(path: Path, frames: int = 24, fps: int = 12) -> None:
    """A real H.264 + AAC mp4: 2 s of video and a 440 Hz tone."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        a.layout = "mono"
        for i in range(frames):
            img = np.full((64, 96, 3), (i * 10) % 255, np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        t = np.arange(48000 * frames // fps) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for start in range(0, tone.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            af.sample_rate = 48000
            af.pts = start
            for p in a.encode(af):
                c.mux(p)
        for s in (v, a):
            for p in s.encode(None):
                c.mux(p)


def test_sink_keeps_frame_count_timing_and_copies_audio(tmp_path):
    src = tmp_path / "in.mp4"
    _clip_with_audio(src)
    with av.open(str(src)) as c:
        pts_in = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(src)) as c:
        audio_in = sum(1 for p in c.demux(audio=0) if p.dts is not None)
    out = tmp_path / "out.mp4"
    sink = Mp4Sink(out, fps=12, audio_from=str(src))
    for i, t in enumerate(pts_in):
        sink.write(np.full((129, 191, 3), i, np.uint8), t)  # odd size: padded to even
    sink.close()
    with av.open(str(out)) as c:
        vs = c.streams.video[0]
        assert (vs.width, vs.height) == (192, 130)
        pts_out = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        assert c.streams.audio, "audio stream was dropped"
        audio_out = sum(1 for p in c.demux(audio=0) if p.dts is not None)
    assert len(pts_out) == len(pts_in)
    np.testing.assert_allclose(np.array(pts_out) - pts_out[0], np.array(pts_in) - pts_in[0], atol=1e-3)
    assert audio_out == audio_in


def test_sink_drop_audio_and_variable_timing(tmp_path):
    out = tmp_path / "vfr.mp4"
    times = [0.0, 0.1, 0.15, 0.5, 0.52]
    sink = Mp4Sink(out, fps=25)
    for t in times:
        sink.write(np.zeros((64, 64, 3), np.uint8), t)
    sink.close()
    with av.open(str(out)) as c:
        assert not c.streams.audio
        got = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    np.testing.assert_allclose(np.array(got) - got[0], times, atol=1e-3)


def test_sink_refuses_missing_folder(tmp_path):
    with pytest.raises(SinkError, match="does not exist"):
        Mp4Sink(tmp_path / "nope" / "x.mp4", fps=30)
