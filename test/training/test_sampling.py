"""Episode split, per-step batches (seeded by step, split across ranks) and the loader."""

from pathlib import Path

from kinova_policy_ros.core.config import DataConfig, TrainConfig
from kinova_policy_ros.data.dataset import KinovaJointDataset
from kinova_policy_ros.testing.synthetic import write_episodes
from kinova_policy_ros.training.distributed import Dist
from kinova_policy_ros.training.sampling import (
    make_loader,
    sampling_cdf,
    split_episodes,
    StepBatchSampler,
    training_loader,
)
import numpy as np
import pytest
import torch

FRAMES = 10


@pytest.fixture(scope='module')
def ds(tmp_path_factory) -> KinovaJointDataset:
    root = tmp_path_factory.mktemp('sampling')
    files = write_episodes(root / 'episodes', 3, num_frames=FRAMES, hw=(16, 20))
    cfg = DataConfig(resize_hw=(16, 20), obs_horizon=4, pred_horizon=6, action_horizon=3)
    return KinovaJointDataset.from_config(files, cfg, cache_dir=root / 'cache')


def test_split_is_by_episode_and_deterministic(tmp_path: Path):
    files = [tmp_path / f'episode_{i:03d}.npz' for i in range(5)]
    tr, va = split_episodes(files, 0.4, seed=0)
    assert len(va) == 2 and len(tr) == 3 and not set(tr) & set(va)
    assert split_episodes(files, 0.4, seed=0) == (tr, va)
    assert split_episodes(files[:1], 0.5, seed=0) == (files[:1], [])
    assert split_episodes(list(reversed(files)), 0.4, seed=0) == (tr, va)  # order-free
    assert split_episodes(files, 0.0, seed=0) == (files, [])
    # at least one validation episode, and always one left to train on
    assert [len(v) for _, v in (split_episodes(files, f, 0) for f in (0.01, 0.99))] == [1, 4]


def test_cdf_weights_episode_starts(ds: KinovaJointDataset):
    assert len(ds) == 3 * FRAMES
    cdf = sampling_cdf(ds, 4.0)
    assert cdf.shape == (len(ds),) and cdf[-1] == pytest.approx(1.0)
    assert np.all(np.diff(cdf) > 0)
    weights = np.diff(np.concatenate([[0.0], cdf])) * (3 * (4 * 4.0 + FRAMES - 4))
    expected = np.tile(np.r_[np.full(4, 4.0), np.ones(FRAMES - 4)], 3)
    np.testing.assert_allclose(weights, expected, rtol=1e-9)
    np.testing.assert_allclose(sampling_cdf(ds, 1.0), np.arange(1, len(ds) + 1) / len(ds))


def test_batches_depend_only_on_the_step_and_ranks_share_them(ds: KinovaJointDataset):
    cdf = sampling_cdf(ds, 1.0)
    full = list(StepBatchSampler(cdf, 8, 0, 6, seed=3, d=Dist()))
    assert len(full) == len(StepBatchSampler(cdf, 8, 0, 6, seed=3, d=Dist())) == 6
    assert all(len(b) == 8 and all(0 <= i < len(ds) for i in b) for b in full)
    assert len({tuple(b) for b in full}) == 6  # a new draw every step
    # a run resumed at step 4 draws the batches the uninterrupted run drew
    assert list(StepBatchSampler(cdf, 8, 4, 6, seed=3, d=Dist())) == full[4:]
    assert list(StepBatchSampler(cdf, 8, 0, 6, seed=4, d=Dist())) != full
    ranks = [list(StepBatchSampler(cdf, 8, 0, 6, 3, Dist(r, 2, r))) for r in (0, 1)]
    assert [a + b for a, b in zip(ranks[0], ranks[1])] == full
    assert len(StepBatchSampler(cdf, 8, 6, 6, seed=3, d=Dist())) == 0


def test_oversampling_draws_mostly_episode_starts(ds: KinovaJointDataset):
    drawn = np.concatenate(list(StepBatchSampler(sampling_cdf(ds, 1e6), 64, 0, 4, 0, Dist())))
    assert np.all(ds.frame_of(drawn) < 4)


def test_loader_leaves_the_global_rng_alone(ds: KinovaJointDataset):
    sampler = StepBatchSampler(sampling_cdf(ds, 1.0), 4, 0, 3, seed=0, d=Dist())
    before = torch.get_rng_state()
    batches = list(make_loader(ds, sampler, workers=0, pin=False))
    assert torch.equal(torch.get_rng_state(), before)
    assert len(batches) == 3
    assert batches[0]['q'].shape == (4, 4, 7) and batches[0]['gt_joint'].shape == (4, 6, 7)
    first = ds[next(iter(sampler))[0]]
    assert torch.equal(batches[0]['q'][0], first['q'])


def test_training_loader_of_segments_and_of_windows(ds: KinovaJointDataset):
    tc = TrainConfig(batch_size=8, num_steps=5, windows_per_segment=2)
    seg = list(training_loader(ds, tc, 2, Dist(), pin=False))
    assert len(seg) == 3  # steps 2, 3, 4
    assert seg[0]['q'].shape == (4, 2, 4, 7)  # [G, S, K, 7]: 8 windows in 4 segments of 2
    assert seg[0]['window_index'].shape == (4, 2, 4)
    win = list(training_loader(ds, TrainConfig(batch_size=8, num_steps=5), 0, Dist(), False))
    assert len(win) == 5 and win[0]['q'].shape == (8, 4, 7) and 'window_index' not in win[0]
