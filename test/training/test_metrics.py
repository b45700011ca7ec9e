"""metrics.csv (kept up to a resumed step), the loss curve, throughput, validation loss."""

import csv
from pathlib import Path
import sys
import types

from kinova_policy_ros.core.config import DataConfig, ModelConfig
from kinova_policy_ros.data.dataset import KinovaJointDataset
from kinova_policy_ros.policy.model import TransformerJointGripperNoDQ
from kinova_policy_ros.testing.synthetic import write_episodes
from kinova_policy_ros.training import metrics
from kinova_policy_ros.training.metrics import (
    episode_segments,
    METRIC_FIELDS,
    MetricsLog,
    Throughput,
    validate,
)
import numpy as np
import pytest
import torch


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_log_writes_rows_flushed_and_draws_the_curve(tmp_path: Path):
    log = MetricsLog(tmp_path, resumed_step=0, tensorboard=False)
    log.write({'step': 1, 'lr': 1e-3, 'train_loss': 0.5, 'ema_decay': None})
    assert rows(tmp_path / 'metrics.csv')[0]['train_loss'] == '0.5'  # on disk before close
    log.write({'step': 2, 'val_loss': 0.25})
    log.close()
    log.close()  # closing twice is harmless
    got = rows(tmp_path / 'metrics.csv')
    assert list(got[0]) == list(METRIC_FIELDS)
    assert [(r['step'], r['train_loss'], r['val_loss']) for r in got] == [
        ('1', '0.5', ''),
        ('2', '', '0.25'),
    ]
    assert got[0]['ema_decay'] == ''
    assert (tmp_path / 'loss_curve.png').stat().st_size > 1000


def test_resumed_log_keeps_rows_up_to_the_resumed_step(tmp_path: Path):
    log = MetricsLog(tmp_path, resumed_step=0, tensorboard=False)
    for step in range(1, 6):
        log.write({'step': step, 'train_loss': 1.0 / step})
    log.close()
    resumed = MetricsLog(tmp_path, resumed_step=3, tensorboard=False)
    assert [r['step'] for r in rows(tmp_path / 'metrics.csv')] == ['1', '2', '3']
    resumed.write({'step': 4, 'train_loss': 0.1})
    resumed.close()
    got = rows(tmp_path / 'metrics.csv')
    assert [(r['step'], r['train_loss']) for r in got][2:] == [('3', str(1.0 / 3)), ('4', '0.1')]


def test_throughput_counts_samples_between_takes(monkeypatch):
    clock = iter([10.0, 12.0, 13.0, 13.0])  # a fake clock: no assertion on real time
    monkeypatch.setattr(metrics.time, 'perf_counter', lambda: next(clock))
    meter = Throughput()  # t0 = 10
    meter.add(8)
    meter.add(8)
    assert meter.take() == (8.0, 2.0)  # 16 samples in 2 s, 2 s since the start
    meter.add(4)
    assert meter.take() == (4.0, 3.0)  # the count and the interval restarted at the take
    assert meter.take() == (0.0, 3.0)  # nothing since; no division by a zero interval


@pytest.fixture(scope='module')
def val_ds(tmp_path_factory) -> KinovaJointDataset:
    root = tmp_path_factory.mktemp('metrics')
    files = write_episodes(root / 'episodes', 2, num_frames=9, hw=(16, 20))
    cfg = DataConfig(resize_hw=(16, 20), obs_horizon=4, pred_horizon=6, action_horizon=3)
    return KinovaJointDataset.from_config(files, cfg, cache_dir=root / 'cache')


def test_validation_loss_is_the_mse_over_the_strided_samples(val_ds: KinovaJointDataset):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, dim_feedforward=64, img_feat_dim=16, q_feat_dim=8)
    model = TransformerJointGripperNoDQ(cfg, obs_horizon=4).train()
    items = [val_ds[i] for i in range(len(val_ds))]
    stack = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    got = validate(model, val_ds, torch.device('cpu'), 6, batch_size=5)
    assert not model.training  # evaluated without dropout
    with torch.no_grad():
        pred = model(stack['rgb'], stack['depth'], stack['q'], 6)
    assert got == pytest.approx(float(((pred - stack['gt_joint']) ** 2).mean()), rel=1e-5)
    # at most max_samples, evenly strided: first and last sample
    ends = validate(model, val_ds, torch.device('cpu'), 6, max_samples=2)
    with torch.no_grad():
        pred2 = model(stack['rgb'][[0, -1]], stack['depth'][[0, -1]], stack['q'][[0, -1]], 6)
    expected = float(((pred2 - stack['gt_joint'][[0, -1]]) ** 2).mean())
    assert ends == pytest.approx(expected, rel=1e-5)


def test_scalars_go_to_tensorboard_when_installed(tmp_path: Path, monkeypatch):
    calls: list[tuple] = []

    class FakeWriter:
        def __init__(self, logdir: str) -> None:
            calls.append(('open', Path(logdir).name))

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def close(self) -> None:
            calls.append(('close',))

    monkeypatch.setitem(
        sys.modules, 'torch.utils.tensorboard', types.SimpleNamespace(SummaryWriter=FakeWriter)
    )
    log = MetricsLog(tmp_path, resumed_step=0)
    log.write({'step': 5, 'train_loss': 0.5, 'ema_decay': None, 'val_loss': 0.25})
    log.close()
    assert calls == [
        ('open', 'tensorboard'), ('train_loss', 0.5, 5), ('val_loss', 0.25, 5), ('close',)
    ]


def test_episode_segments_cover_every_sample_once():
    segs = episode_segments(np.array([9, 3, 5]), 4)
    assert segs == [(0, 4), (4, 4), (8, 1), (9, 3), (12, 4), (16, 1)]
    covered = [i for start, size in segs for i in range(start, start + size)]
    assert covered == list(range(17))


@pytest.mark.parametrize('anchor', [False, True])
def test_shared_frame_validation_matches_the_per_window_loss(tmp_path: Path, anchor: bool):
    files = write_episodes(tmp_path / 'episodes', 2, num_frames=11, hw=(16, 20))
    cfg = DataConfig(
        resize_hw=(16, 20), obs_horizon=4, pred_horizon=6, action_horizon=3, anchor_frame=anchor
    )
    ds = KinovaJointDataset.from_config(files, cfg, cache_dir=tmp_path / 'cache')
    torch.manual_seed(1)
    mcfg = ModelConfig(d_model=32, dim_feedforward=64, img_feat_dim=16, q_feat_dim=8)
    model = TransformerJointGripperNoDQ(mcfg, obs_horizon=4)
    cpu = torch.device('cpu')
    per_window = validate(model, ds, cpu, 6, batch_size=4, shared_frames=False)
    shared = validate(model, ds, cpu, 6, batch_size=4)
    assert shared == pytest.approx(per_window, rel=1e-5)
    assert validate(model, ds, cpu, 6, batch_size=64) == pytest.approx(per_window, rel=1e-5)
    # fewer samples than the dataset: the strided per-window path whatever shared_frames says
    assert validate(model, ds, cpu, 6, max_samples=3) == validate(
        model, ds, cpu, 6, max_samples=3, shared_frames=False
    )
