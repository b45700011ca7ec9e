"""
The baseline of ``bench_dataloader.py``: a per-item npz loader, as a first implementation does it.

Every ``__getitem__`` opens the episode's npz file, takes the observation window and the future
joint targets out of its arrays, then resizes and normalises every frame of the window. Nothing is
cached between items: a compressed ``.npz`` is decompressed again (whole arrays: ``np.load`` has
no partial read of a zip member) and the same frames are resized again for every window that
contains them. The sample semantics are those of ``KinovaJointDataset`` (docs/data.md): frames
``t-K+1 … t`` edge-padded with frame 0, targets ``q[t+1 … t+T]`` padded with the last frame, RGB
in [0, 1], depth ``clip(d, 0, max) / max``, joints min-max normalised to [-1, 1].

The only work done once is the index (episode, frame) built in the constructor, which also opens
every file once to learn its length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

FloatArray = npt.NDArray[np.float64]

_STAT_KEYS = ('q_min', 'q_max', 'dq_min', 'dq_max')


class NaiveEpisodeDataset(torch.utils.data.Dataset[tuple[torch.Tensor, ...]]):
    """Samples of npz episodes, read and preprocessed from the file on every access."""

    def __init__(
        self,
        files: Sequence[str | Path],
        resize_hw: tuple[int, int],
        stats: Mapping[str, npt.ArrayLike],
        obs_horizon: int = 8,
        pred_horizon: int = 12,
        max_depth_m: float = 2.0,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.resize_hw = resize_hw
        # Per-joint minima and maxima of the training episodes: q_min, q_max, dq_min, dq_max.
        self.stats = {k: np.asarray(stats[k], dtype=np.float64) for k in _STAT_KEYS}
        self.obs_horizon = obs_horizon
        self.pred_horizon = pred_horizon
        self.max_depth_m = max_depth_m
        self.index: list[tuple[Path, int]] = []
        for path in self.files:
            with np.load(path) as z:
                length = int(z['q'].shape[0])
            self.index.extend((path, t) for t in range(length))

    def __len__(self) -> int:
        return len(self.index)

    def _normalise(self, x: FloatArray, name: str) -> torch.Tensor:
        lo, hi = self.stats[f'{name}_min'], self.stats[f'{name}_max']
        span = np.where(hi > lo, hi - lo, 1.0)
        out = 2.0 * (x - lo) / span - 1.0
        out[:, hi <= lo] = 0.0  # a joint that never moved maps to 0
        return torch.from_numpy(out.astype(np.float32))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        path, t = self.index[i]
        with np.load(path) as z:
            rgb_all = z['rgb']
            depth_all = z['depth']
            q_all = z['q'].astype(np.float64)
            dq_all = z['dq'].astype(np.float64)
        n = q_all.shape[0]
        obs = np.clip(np.arange(t - self.obs_horizon + 1, t + 1), 0, n - 1)
        fut = np.clip(np.arange(t + 1, t + 1 + self.pred_horizon), 0, n - 1)

        frames_rgb = []
        frames_depth = []
        for k in obs:
            rgb = torch.from_numpy(rgb_all[k].copy()).permute(2, 0, 1)[None].float() / 255.0
            frames_rgb.append(
                F.interpolate(rgb, size=self.resize_hw, mode='bilinear', align_corners=False)[0]
            )
            d = np.clip(depth_all[k].astype(np.float32), 0.0, self.max_depth_m) / self.max_depth_m
            frames_depth.append(
                F.interpolate(
                    torch.from_numpy(d)[None, None],
                    size=self.resize_hw,
                    mode='bilinear',
                    align_corners=False,
                )[0]
            )
        return (
            torch.stack(frames_rgb),
            torch.stack(frames_depth),
            self._normalise(q_all[obs], 'q'),
            self._normalise(dq_all[obs], 'dq'),
            self._normalise(q_all[fut], 'q'),
        )
