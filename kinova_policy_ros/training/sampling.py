"""
What the training loop sees: the episode split, the per-step batches and the data loader.

The batch of step ``s`` is drawn from a generator seeded with ``(seed, s)`` and split across
ranks, so a resumed run draws exactly the batches the uninterrupted run would have drawn,
without sampler state or skipped batches.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

from kinova_policy_ros.core.config import TrainConfig
from kinova_policy_ros.data.dataset import KinovaJointDataset, SegmentDataset
from kinova_policy_ros.training.distributed import Dist
import numpy as np
import numpy.typing as npt
import torch

Batch = dict[str, torch.Tensor]


def split_episodes(
    files: Sequence[Path], val_fraction: float, seed: int
) -> tuple[list[Path], list[Path]]:
    """Hold out whole episodes (never frames) for validation, deterministically."""
    files = sorted(files)
    n_val = round(val_fraction * len(files))
    if val_fraction > 0 and len(files) >= 2:
        n_val = max(1, min(n_val, len(files) - 1))
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(len(files))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, val


def sampling_cdf(ds: KinovaJointDataset, start_oversample: float) -> npt.NDArray[np.float64]:
    """CDF over samples; episode starts (t < obs_horizon) weighted ``start_oversample``."""
    idx = np.arange(len(ds))
    w = np.where(ds.frame_of(idx) < ds.cfg.obs_horizon, start_oversample, 1.0)
    cdf: npt.NDArray[np.float64] = np.cumsum(w, dtype=np.float64)
    normalized: npt.NDArray[np.float64] = cdf / cdf[-1]
    return normalized


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yield, for steps ``start..stop-1``, this rank's share of the step's global batch."""

    def __init__(
        self,
        cdf: npt.NDArray[np.float64],
        batch: int,
        start: int,
        stop: int,
        seed: int,
        d: Dist,
    ) -> None:
        self.cdf, self.batch, self.start, self.stop, self.seed, self.d = (
            cdf,
            batch,
            start,
            stop,
            seed,
            d,
        )

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.batch // self.d.world
        for step in range(self.start, self.stop):
            u = np.random.default_rng([self.seed, step]).random(self.batch)
            idx = np.minimum(np.searchsorted(self.cdf, u, side='right'), len(self.cdf) - 1)
            yield idx[self.d.rank * per_rank:(self.d.rank + 1) * per_rank].tolist()


def make_loader(
    ds: torch.utils.data.Dataset[Batch], sampler: StepBatchSampler, workers: int, pin: bool
) -> torch.utils.data.DataLoader[Batch]:
    """Return the loader of ``sampler``'s batches of ``ds``, drawing on no global RNG."""
    # A private generator: the loader must not draw from the global RNG (dropout), or a resumed
    # run would see a shifted random stream.
    return torch.utils.data.DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(sampler.seed),
    )


def training_loader(
    ds: KinovaJointDataset, tc: TrainConfig, start_step: int, d: Dist, pin: bool
) -> torch.utils.data.DataLoader[Batch]:
    """
    Return the loader of steps ``start_step..train.num_steps-1`` for this rank.

    With ``train.windows_per_segment`` S > 1 an item is a segment of S consecutive windows
    (:class:`SegmentDataset`), and a step draws ``batch_size / S`` segments.
    """
    seg = tc.windows_per_segment
    cdf = sampling_cdf(ds, tc.start_oversample)
    sampler = StepBatchSampler(cdf, tc.batch_size // seg, start_step, tc.num_steps, tc.seed, d)
    source: torch.utils.data.Dataset[Batch] = SegmentDataset(ds, seg) if seg > 1 else ds
    return make_loader(source, sampler, tc.num_workers, pin)
