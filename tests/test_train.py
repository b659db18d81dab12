"""Tiny real training runs (seconds): deterministic on CPU, resumable, exported, adaptable."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engines.train.common import TrainOptions
from engines.train.step1 import train_restorer
from engines.train.step2 import train_step2


def _fake_cache(root: Path, n: int = 12) -> Path:
    """A training cache in the real format (JPEG bytes of 128 px faces; real LR faces per size),
    built from synthetic face-like pictures so the test needs no ../shared data."""
    rng = np.random.default_rng(0)
    enc, faces = [], []
    for i in range(n):
        img = np.full((128, 128, 3), 60 + 10 * i, np.uint8)
        cv2.ellipse(img, (64, 66), (30, 40), 0, 0, 360, (150 + i, 120, 100), -1)
        for x in (52, 76):
            cv2.circle(img, (x, 58), 4, (20, 20, 20), -1)
        img = cv2.add(img, rng.integers(0, 20, img.shape, dtype=np.uint8))
        faces.append(img)
        enc.append(cv2.imencode(".jpg", img)[1])
    cache = root / "cache"
    cache.mkdir()
    np.savez(
        cache / "celeba_train_128.npz",
        data=np.concatenate(enc).ravel(),
        lengths=np.array([len(e) for e in enc]),
    )
    small = {
        f"s{s}": np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA) for f in faces])
        for s in (8, 16, 32)
    }
    np.savez(cache / "real_lr_videos.npz", **small)
    return cache


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return _fake_cache(tmp_path)


def _opts(root: Path, cache: Path, name: str, **kw) -> TrainOptions:
    base = dict(
        steps=4,
        batch=4,
        seed=3,
        threads=1,
        cache=cache,
        ckpt_dir=root / name / "ckpt",
        out=root / name / "weights",
        ckpt_every=2,
        progress=False,
        command="test",
    )
    base.update(kw)
    return TrainOptions(**base)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu")


def test_step1_same_seed_gives_identical_weights_and_resume_continues(tmp_path: Path, cache: Path) -> None:
    a = train_restorer("step1", 16, "fast", _opts(tmp_path, cache, "a"))
    b = train_restorer("step1", 16, "fast", _opts(tmp_path, cache, "b"))
    wa = _state(tmp_path / "a/weights/step1_x16_fast/model.pt")
    wb = _state(tmp_path / "b/weights/step1_x16_fast/model.pt")
    assert a["steps"] == b["steps"] == 4
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # interrupted after 2 steps, then resumed: continues at its checkpoint and ends where the
    # uninterrupted run ended
    stopped = train_restorer("step1", 16, "fast", _opts(tmp_path, cache, "c", stop_after=2))
    assert stopped == {"stopped": True, "start": 0, "steps": 2}
    assert not (tmp_path / "c/weights/step1_x16_fast").exists()
    resumed = train_restorer("step1", 16, "fast", _opts(tmp_path, cache, "c", resume=True))
    assert resumed["start"] == 2 and resumed["steps"] == 4
    wc = _state(tmp_path / "c/weights/step1_x16_fast/model.pt")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    # a different seed trains a different model
    train_restorer("step1", 16, "fast", _opts(tmp_path, cache, "d", seed=4))
    wd = _state(tmp_path / "d/weights/step1_x16_fast/model.pt")
    assert any(not torch.equal(wa[k], wd[k]) for k in wa)


def test_step2_trains_and_exports_the_latent_contract(tmp_path: Path, cache: Path) -> None:
    info = train_step2("fast", _opts(tmp_path, cache, "s2", steps=3))
    out = tmp_path / "s2/weights/step2_fast"
    assert info["steps"] == 3
    mean = np.load(out / "latent_mean.npy")
    assert mean.shape == (16, 16, 16) and mean.dtype == np.float32 and np.isfinite(mean).all()
    for f in ("encoder.onnx", "decoder.onnx", "model.pt", "MODEL_CARD.md"):
        assert (out / f).exists()
    card = (out / "MODEL_CARD.md").read_text()
    assert "non-commercial" in card and "run.py train" in card and "| seed | 3 |" in card


def test_step2_cascade_learns_on_step1_outputs(tmp_path: Path, cache: Path) -> None:
    """With --cascade SHARE, step 2 reads step 1's training checkpoint and that share of each
    batch is its output, on synthetic and video-coded LR faces; the run differs from a plain one
    from the same seed, and the card says so. --init-from starts from a trained step 2."""
    from engines.data.video_degrade import load_pool
    from engines.train.step2 import Cascade

    opts = _opts(tmp_path, cache, "cas", steps=2)
    train_restorer("step1", 8, "fast", opts, learned=False)  # also builds the video pool
    hr = np.zeros((12, 128, 128, 3), np.uint8)
    pool = load_pool(hr, 16, cache, "celeba_train")
    calls: list[int] = []

    def pools(size: int) -> np.ndarray:
        calls.append(size)
        return pool

    cas = Cascade(opts.ckpt_dir, "fast", torch.device("cpu"), pools)
    cas.refresh()
    assert list(cas.nets) == [8]
    rows, flip = np.array([0, 5, 7, 11]), np.array([False, True, False, True])
    mr = cas.mr(hr[rows], rows, flip, np.random.default_rng(0))
    assert mr is not None and mr.shape == (4, 3, 64, 64) and calls == [16]
    with pytest.raises(ValueError, match="share in 0..1"):
        train_step2("fast", opts, cascade=1.5)
    info = train_step2("fast", opts, cascade=0.75)
    plain = train_step2("fast", _opts(tmp_path, cache, "plain", steps=2))
    assert "--cascade 0.75" in info["data"] and "step 1's output" not in plain["data"]
    a = _state(tmp_path / "cas/weights/step2_fast/model.pt")
    b = _state(tmp_path / "plain/weights/step2_fast/model.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    tuned = train_step2(
        "fast", _opts(tmp_path, cache, "tuned", steps=1, lr=0.0), init_from=tmp_path / "cas/weights"
    )
    assert "fine-tuned from" in tuned["data"]
    c = _state(tmp_path / "tuned/weights/step2_fast/model.pt")
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_multi_frame_step1_starts_as_the_single_frame_model_and_learns_from_history(
    tmp_path: Path, cache: Path
) -> None:
    """Widened from a single-frame step 1, the 3-frame model computes exactly what it did (the
    older frames' weights start at zero); trained on track histories it uses them, and it
    exports a 9-channel ONNX file under its own name."""
    from engines.arch import build
    from engines.train import configs as C
    from engines.train.step1 import widen_to_frames

    single = build(C.STEP1_ARCH, C.step1_kwargs(8, "fast")).eval()
    torch.nn.init.normal_(single.tail.weight, std=0.05)
    multi = build(C.STEP1_ARCH, C.step1_kwargs(8, "fast", frames=3)).eval()
    multi.load_state_dict(widen_to_frames(single.state_dict(), 3))
    x = torch.rand(2, 9, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(multi(x), single(x[:, -3:]))

    opts = _opts(tmp_path, cache, "k1", steps=2)
    train_restorer("step1", 8, "fast", opts, learned=False)
    info = train_restorer(
        "step1",
        8,
        "fast",
        _opts(tmp_path, cache, "k3", steps=3),
        learned=False,
        frames=3,
        init_from=opts.out,
    )
    assert info["frames"] == 3 and "histories of 3 frames" in info["data"]
    out = tmp_path / "k3/weights/step1_x8_fast_k3"
    head = _state(out / "model.pt")["head.weight"]
    assert head.shape[1] == 9 and head[:, :6].abs().sum() > 0  # the older frames' weights moved
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[1] == 9
    with pytest.raises(ValueError, match="--no-learned"):
        train_restorer("step1", 8, "fast", _opts(tmp_path, cache, "bad"), frames=3)


def test_ablations_go_to_their_own_folder(tmp_path: Path, cache: Path) -> None:
    train_restorer(
        "step1", 8, "fast", _opts(tmp_path, cache, "ab", steps=2), synthetic_only=True, tag="synth"
    )
    train_restorer("onestep", 8, "fast", _opts(tmp_path, cache, "ab", steps=2))
    abl = tmp_path / "ab/weights/ablations"
    assert (abl / "step1_x8_fast_synth/model.onnx").exists()
    assert (abl / "onestep_x8_fast/model.onnx").exists()
    assert not (tmp_path / "ab/weights/manifest.json").exists()


def test_bad_choices_fail_clearly(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        train_restorer("step1", 3, "fast", _opts(tmp_path, cache, "e"))
    with pytest.raises(ValueError, match="kind"):
        train_restorer("step3", 8, "fast", _opts(tmp_path, cache, "e"))
    with pytest.raises(ValueError, match="cuda"):
        if torch.cuda.is_available():
            raise ValueError("cuda present: nothing to check")
        train_restorer("step1", 8, "fast", _opts(tmp_path, cache, "e", device="cuda"))


@pytest.mark.slow
@pytest.mark.shared
def test_adapt_to_one_camera_writes_a_complete_weights_folder(tmp_path: Path, cache: Path) -> None:
    clip = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos" / "intel_asl__book.mkv"
    if not clip.exists():
        pytest.skip(f"needs {clip} (../shared data)")
    from engines.train.adapt import adapt
    from engines.train.init_weights import export_random

    src = tmp_path / "src"
    export_random(src, variants=("fast",), scales=(8,))
    info = adapt(str(clip), 8, "fast", _opts(tmp_path, cache, "ad", steps=2), weights=src, max_frames=20)
    out = tmp_path / "ad" / "weights"
    assert info["steps"] == 2 and "faces harvested from" in info["data"]
    assert (out / "step2_fast/decoder.onnx").exists() and (out / "step1_x8_fast/model.onnx").exists()
    assert "--adapt" in (out / "step1_x8_fast/MODEL_CARD.md").read_text()
    with pytest.raises(ValueError, match="new folder"):
        adapt(
            str(clip), 8, "fast", _opts(tmp_path, cache, "ad2", steps=2, out=src), weights=src, max_frames=20
        )


def test_step1_through_a_frozen_step2_learns_its_hr_loss_and_leaves_step2_alone(
    tmp_path: Path, cache: Path
) -> None:
    """--through-step2: step 1 also gets the HR loss of a trained step 2 on its output; the run
    differs from the MR-only one of the same seed, the step 2 file is untouched, the card says so."""
    train_step2("fast", _opts(tmp_path, cache, "s2", steps=2))
    s2 = tmp_path / "s2/weights"
    before = _state(s2 / "step2_fast/model.pt")
    info = train_restorer("step1", 8, "fast", _opts(tmp_path, cache, "th"), learned=False, through_step2=s2)
    plain = train_restorer("step1", 8, "fast", _opts(tmp_path, cache, "pl"), learned=False)
    assert "hr" in info["final_losses"] and "hr" not in plain["final_losses"]
    assert "frozen step 2" in info["data"]
    a = _state(tmp_path / "th/weights/step1_x8_fast/model.pt")
    b = _state(tmp_path / "pl/weights/step1_x8_fast/model.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    after = _state(s2 / "step2_fast/model.pt")
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="one-step"):
        train_restorer("onestep", 8, "fast", _opts(tmp_path, cache, "os"), through_step2=s2)


def test_step1_trains_on_real_track_histories(tmp_path: Path, cache: Path) -> None:
    """A quarter of each batch comes from the real-track cache (here a made-up one in the real
    format): the run differs from the same seed without it, and the card says where data came from."""
    rng = np.random.default_rng(1)
    mr = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    lr = np.stack([[cv2.resize(m, (16, 16), interpolation=cv2.INTER_AREA)] * 5 for m in mr])
    np.savez(cache / "real_tracks_16_k5.npz", lr=lr, mr=mr, clips=np.array(2))
    kw = dict(learned=False, frames=3)
    info = train_restorer("step1", 8, "fast", _opts(tmp_path, cache, "real", batch=8), real_tracks=True, **kw)
    assert "6 real track histories (MR targets) from 2 clips" in info["data"]
    train_restorer("step1", 8, "fast", _opts(tmp_path, cache, "plain", batch=8), **kw)
    with_real = _state(tmp_path / "real/weights/step1_x8_fast_k3/model.pt")
    without = _state(tmp_path / "plain/weights/step1_x8_fast_k3/model.pt")
    assert any(not torch.equal(with_real[k], without[k]) for k in with_real)
    with pytest.raises(ValueError, match="--real-tracks trains a step 1"):
        train_restorer("onestep", 8, "fast", _opts(tmp_path, cache, "bad"), learned=False, real_tracks=True)
