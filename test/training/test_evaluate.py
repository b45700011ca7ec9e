"""Offline evaluation: metrics in radians on held-out episodes, plots."""

import dataclasses
import json
from pathlib import Path

from kinova_policy_ros.core.errors import CheckpointError, KinovaPolicyError
from kinova_policy_ros.policy.checkpoint import read_checkpoint_info
from kinova_policy_ros.testing.synthetic import write_episodes
from kinova_policy_ros.training.evaluate import evaluate, main, validation_episodes
from kinova_policy_ros.training.train import main as train_main
import numpy as np
import pytest


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp('evaluate')
    data = root / 'data'
    write_episodes(data, 4, num_frames=16, hw=(24, 32))
    args = ['--data', str(data), '--out', str(root / 'run'), '--no-progress']
    args += ['--cache-dir', str(root / 'cache'), 'data.resize_hw=[24,32]', 'train.num_steps=3']
    args += ['model.d_model=32', 'model.dim_feedforward=64', 'model.conv_channels=[8,16]']
    args += ['data.val_fraction=0.5', 'train.batch_size=4']
    assert train_main(args) == 0
    return root / 'run' / 'checkpoints' / 'best', data


def test_metrics_on_validation_episodes(trained, tmp_path: Path):
    ckpt, data = trained
    m = evaluate(ckpt, data, tmp_path / 'eval', cache_dir=tmp_path / 'c', progress=False)
    val = json.loads((ckpt / 'config.json').read_text())['val_episodes']
    assert m['split'] == 'val' and m['episodes'] == sorted(val)
    assert m['num_samples'] == 16 * len(val)
    per_step = np.array(m['mae_rad_per_step_joint'])
    assert per_step.shape == (12, 7)
    assert np.isclose(per_step.mean(), m['mae_rad'])
    assert m['max_abs_error_rad'] >= m['mae_rad'] > 0
    on_disk = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert on_disk == m
    pngs = sorted(p.name for p in (tmp_path / 'eval').glob('*.png'))
    assert 'horizon_error.png' in pngs
    assert len([p for p in pngs if p.startswith('trajectory_')]) == len(val)


def test_all_split_and_cli(trained, tmp_path: Path, capsys):
    ckpt, data = trained
    argv = ['--checkpoint', str(ckpt), '--data', str(data), '--out', str(tmp_path / 'e')]
    assert main([*argv, '--episodes', 'all', '--cache-dir', str(tmp_path / 'c')]) == 0
    assert json.loads((tmp_path / 'e' / 'metrics.json').read_text())['num_samples'] == 64
    assert '[evaluate] 64 samples (all)' in capsys.readouterr().out


def test_validation_episodes_absent(trained, tmp_path: Path):
    ckpt, _ = trained
    other = tmp_path / 'other'
    write_episodes(other, 1, seed=9, num_frames=10, hw=(24, 32))
    (other / 'episode_000.npz').rename(other / 'unrelated.npz')
    with pytest.raises(KinovaPolicyError, match='none of the checkpoint'):
        evaluate(ckpt, other, tmp_path / 'e', episodes='val', cache_dir=tmp_path / 'c')


def test_progress_in_a_log_is_plain_lines(trained, tmp_path: Path, capsys):
    ckpt, data = trained
    evaluate(ckpt, data, tmp_path / 'e', episodes='all', batch_size=8, cache_dir=tmp_path / 'c')
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('evaluate:')]
    assert '\r' not in err
    assert [line.split()[2] for line in lines] == [f'{n}/8' for n in range(1, 9)]  # 64 / 8
    evaluate(ckpt, data, tmp_path / 'q', episodes='all', cache_dir=tmp_path / 'c', progress=False)
    assert 'evaluate:' not in capsys.readouterr().err


def test_validation_episodes_must_be_a_list(trained, tmp_path: Path):
    ckpt, _ = trained
    info = read_checkpoint_info(ckpt)
    assert validation_episodes(info) == info.extra['val_episodes']
    bad = dataclasses.replace(info, extra={**info.extra, 'val_episodes': 'episode_000.npz'})
    message = r"config\.json: field 'val_episodes' must be a list"
    with pytest.raises(CheckpointError, match=message):
        validation_episodes(bad)
    assert validation_episodes(dataclasses.replace(info, extra={})) == []
