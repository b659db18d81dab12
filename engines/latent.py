"""Latent interpolation for step 2 of the FSR method: pure numpy, no model, no torch.

Two interpolations happen on the prior's latent codes (see ../shared/docs/METHOD.md):

* toward the prior's mean latent, to suppress artifacts the encoder picked up from a bad MR
  face: a face far from the training distribution is pulled back toward a plausible one;
* across time within a face track, so that the decoded face does not flicker when the tiny
  input changes by sub-pixel jitter and fresh sensor/codec noise from frame to frame.

The step 2 decoder is trained with latent noise and mixing (engines/train/step2.py), so both
straight-line interpolations stay on plausible faces.

A residual prior's latent also carries the MR face itself after its code channels (see
engines/arch/residual_prior_arch.py); the prior's mean covers the code channels only, and
`interpolate_code` interpolates those alone: the MR pixels are the face's own evidence, not
something to pull toward an average face or to smear across frames.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable

import numpy as np

MODES = ("exponential", "window")


def toward_mean(z: np.ndarray, mean: np.ndarray, strength: float) -> np.ndarray:
    """Linear interpolation z + strength * (mean - z).

    `z` is one latent (latent_shape) or a batch (N, *latent_shape); `mean` broadcasts over the
    batch. strength 0 returns z unchanged, 1 returns the mean face for everyone.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"toward_mean strength must be in [0, 1], got {strength}")
    z = np.asarray(z, dtype=np.float32)
    mean = np.asarray(mean, dtype=np.float32)
    if z.shape[-mean.ndim :] != mean.shape:
        raise ValueError(f"latent shape {z.shape} does not end with the mean's shape {mean.shape}")
    if strength == 0.0:
        return z.copy()
    return (z + np.float32(strength) * (mean - z)).astype(np.float32)


class TemporalLatent:
    """Per-track smoothing of latent codes across frames.

    Modes:
      * ``exponential``: s_t = alpha * s_{t-1} + (1 - alpha) * z_t; cheap, unbounded memory of
        the past decaying geometrically. alpha = 0 disables smoothing.
      * ``window``: mean of the last `window` codes; a hard bound on how long an old expression
        lingers, at the cost of `window` stored codes per track.

    The first code of a track is returned unchanged. State is bounded by `max_tracks`: the least
    recently updated track is dropped when a new one would exceed it, so a pipeline that forgets
    to call `forget` cannot grow without limit.
    """

    def __init__(
        self, mode: str = "exponential", alpha: float = 0.5, window: int = 4, max_tracks: int = 256
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"temporal mode must be one of {', '.join(MODES)}; got {mode!r}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"temporal alpha must be in [0, 1), got {alpha}")
        if window < 1:
            raise ValueError(f"temporal window must be >= 1 frame, got {window}")
        if max_tracks < 1:
            raise ValueError(f"max_tracks must be >= 1, got {max_tracks}")
        self.mode = mode
        self.alpha = float(alpha)
        self.window = int(window)
        self.max_tracks = int(max_tracks)
        self._state: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._history: OrderedDict[Hashable, deque[np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state) if self.mode == "exponential" else len(self._history)

    def update(self, track_id: Hashable, z: np.ndarray) -> np.ndarray:
        """Feed this frame's code of one track; returns the smoothed code to decode."""
        z = np.asarray(z, dtype=np.float32)
        if self.mode == "exponential":
            prev = self._state.pop(track_id, None)
            if prev is not None and prev.shape != z.shape:
                raise ValueError(f"track {track_id!r}: latent shape changed {prev.shape} -> {z.shape}")
            out = (
                z.copy() if prev is None else (self.alpha * prev + (1.0 - self.alpha) * z).astype(np.float32)
            )
            self._state[track_id] = out
            self._evict(self._state)
            return out.copy()
        hist = self._history.pop(track_id, None)
        if hist is None:
            hist = deque(maxlen=self.window)
        elif hist[0].shape != z.shape:
            raise ValueError(f"track {track_id!r}: latent shape changed {hist[0].shape} -> {z.shape}")
        hist.append(z.copy())
        self._history[track_id] = hist
        self._evict(self._history)
        return np.mean(np.stack(hist), axis=0).astype(np.float32)

    def update_batch(self, track_ids: Iterable[Hashable], zs: np.ndarray) -> np.ndarray:
        """`update` for each row of a batch (N, *latent_shape); rows keep their order."""
        zs = np.asarray(zs, dtype=np.float32)
        ids = list(track_ids)
        if len(ids) != len(zs):
            raise ValueError(f"got {len(ids)} track ids for {len(zs)} latents")
        if len(set(ids)) != len(ids):
            raise ValueError("a batch may hold each track id only once")
        return np.stack([self.update(t, z) for t, z in zip(ids, zs, strict=False)]) if ids else zs.copy()

    def forget(self, track_ids: Iterable[Hashable]) -> None:
        """Drop the state of dead tracks; unknown ids are ignored."""
        for t in track_ids:
            self._state.pop(t, None)
            self._history.pop(t, None)

    def _evict(self, table: OrderedDict) -> None:
        while len(table) > self.max_tracks:
            table.popitem(last=False)


def interpolate_code(
    z: np.ndarray,
    mean: np.ndarray,
    strength: float,
    temporal: TemporalLatent | None = None,
    track_ids: Iterable[Hashable] | None = None,
) -> np.ndarray:
    """`toward_mean`, then `temporal`'s per-track smoothing (when given with `track_ids`), on the
    leading channels of a batch of latents (N, C, H, W) that `mean` (c, H, W) covers; channels
    c..C pass through unchanged. With c == C this is the plain interpolation of older priors."""
    z = np.asarray(z, dtype=np.float32)
    mean = np.asarray(mean, dtype=np.float32)
    c = mean.shape[0]
    if z.ndim != 4 or mean.ndim != 3 or z.shape[2:] != mean.shape[1:] or c > z.shape[1]:
        raise ValueError(f"latents {z.shape} do not start with the mean's shape {mean.shape}")
    code = toward_mean(z[:, :c], mean, strength)
    if temporal is not None and track_ids is not None:
        code = temporal.update_batch(track_ids, code)
    return code if c == z.shape[1] else np.concatenate([code, z[:, c:]], axis=1)
