import av
import numpy as np
import pytest
from conftest import write_clip

from streamer.sink import Mp4Sink, SinkError


def test_sink_keeps_frame_count_timing_and_copies_audio(tmp_path):
    src = write_clip(tmp_path / "in.mp4", size=(96, 64), frames=24, fps=12, audio=True)
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
