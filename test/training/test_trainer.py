"""The Trainer in-process: set-up checks, progress lines, resume, the best checkpoint."""

from pathlib import Path

from kinova_policy_ros.core.config import load_experiment_config
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.policy.checkpoint import read_checkpoint_info
from kinova_policy_ros.testing.synthetic import write_episodes
from kinova_policy_ros.training import trainer as trainer_module
from kinova_policy_ros.training.distributed import Dist
from kinova_policy_ros.training.trainer import Trainer
import pytest
import torch

TINY = [
    'data.resize_hw=[24,32]',
    'train.batch_size=4',
    'model.d_model=32',
    'model.dim_feedforward=64',
    'model.img_feat_dim=16',
    'model.q_feat_dim=8',
    'model.conv_channels=[8,16]',
    'train.log_every=1',
]


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('trainer')
    write_episodes(root / 'episodes', 3, num_frames=12, hw=(24, 32))
    return root / 'episodes'


def trainer(data: Path, out: Path, *overrides: str, **kwargs) -> Trainer:
    cfg = load_experiment_config(None, [*TINY, *overrides])
    return Trainer(cfg, data, out, cache_dir=out.parent / 'cache', **kwargs)


def test_progress_is_plain_lines_when_not_a_terminal(data: Path, tmp_path: Path, capsys):
    t = trainer(data, tmp_path / 'run', 'train.num_steps=4', 'data.val_fraction=0')
    assert t.run() == tmp_path / 'run' / 'checkpoints' / 'step_000004'
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('train:')]
    assert '\r' not in err
    assert [line.split()[2] for line in lines] == ['1/4', '2/4', '3/4', '4/4']
    assert lines[-1].startswith('train: 100% 4/4') and 'loss=' in lines[-1]
    assert not any('val=' in line for line in lines)  # no validation in this run: no val=inf
    quiet = trainer(data, tmp_path / 'quiet', 'train.num_steps=2', progress=False)
    quiet.run()
    assert 'train:' not in capsys.readouterr().err


def test_resumed_trainer_continues_at_the_checkpoint_step(data: Path, tmp_path: Path, capsys):
    out = tmp_path / 'run'
    first = trainer(data, out, 'train.num_steps=2', 'train.val_every=2')
    first.run()
    resumed = trainer(data, out, 'train.num_steps=4', 'train.val_every=2', resume=out)
    assert resumed.step == 2 and resumed.best_val == first.best_val < float('inf')
    capsys.readouterr()
    resumed.run()
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith('train:')]
    assert [line.split()[2] for line in lines] == ['3/4', '4/4']  # counted from the resume
    assert read_checkpoint_info(out / 'checkpoints' / 'last').step == 4


def test_best_follows_validation_or_else_the_last_checkpoint(data: Path, tmp_path: Path):
    t = trainer(data, tmp_path / 'val', 'train.num_steps=2', 'train.val_every=1')
    t.run()
    best = (tmp_path / 'val' / 'checkpoints' / 'best').resolve()
    info = read_checkpoint_info(best)
    assert info.extra['val_loss'] == t.best_val
    assert best.name in ('step_000001', 'step_000002')
    u = trainer(data, tmp_path / 'noval', 'train.num_steps=2', 'data.val_fraction=0')
    u.run()
    ck = tmp_path / 'noval' / 'checkpoints'
    assert (ck / 'best').resolve() == (ck / 'last').resolve() == ck / 'step_000002'
    assert read_checkpoint_info(ck / 'best').extra['val_loss'] is None
    # The checkpoint records the camera geometry it was trained on (the node checks live streams).
    geometry = read_checkpoint_info(ck / 'best').geometry
    assert geometry is not None
    assert geometry.rgb_hw == geometry.depth_hw == ((24, 32),)
    assert geometry.fit == 'center_crop' and tuple(geometry.resize_hw) == (24, 32)


def test_set_up_errors_name_the_setting(data: Path, tmp_path: Path, monkeypatch):
    with pytest.raises(KinovaPolicyError, match=r'train\.aux_goal_weight is 1\.0'):
        trainer(data, tmp_path / 'a', 'train.aux_goal_weight=1.0')
    monkeypatch.setattr(trainer_module, 'init_distributed', lambda kind: Dist(0, 3, 0))
    message = r'train\.batch_size / train\.windows_per_segment \(2\) .* processes \(3\)'
    with pytest.raises(KinovaPolicyError, match=message):
        trainer(data, tmp_path / 'b', 'train.windows_per_segment=2')


@pytest.mark.parametrize(('value', 'calls'), [('true', 1), ('false', 0)])
def test_keep_freed_memory_is_applied_only_when_set(
    data: Path, tmp_path: Path, monkeypatch, value: str, calls: int
):
    applied: list[bool] = []
    monkeypatch.setattr(trainer_module, 'keep_freed_memory', lambda: applied.append(True))
    trainer(data, tmp_path / 'run', f'train.keep_freed_memory={value}', 'train.num_steps=1')
    assert len(applied) == calls


def test_the_goal_is_taken_at_the_model_tool_point(data: Path, tmp_path: Path):
    t = trainer(
        data, tmp_path / 'run', 'model.goal_head=true', 'train.aux_goal_weight=1.0',
        'model.action_space=task', 'model.tcp_offset=0.1086', 'train.num_steps=1',
    )
    assert t.train_ds.with_goal and t.train_ds.goal_offset == 0.1086
    assert t.model.task_space is not None


def test_speedups_train_the_same_weights_and_validate_alike(data: Path, tmp_path: Path):
    runs = []
    for speedups in (False, True):
        t = trainer(
            data, tmp_path / str(speedups), 'train.num_steps=3', 'train.val_every=1',
            'train.windows_per_segment=2', progress=False, speedups=speedups,
        )
        assert t.optimizer.defaults['foreach'] is speedups
        torch.manual_seed(0)  # the same dropout draws in both runs
        t.run()
        runs.append(t)
    old, new = runs
    assert all(torch.equal(a, b) for a, b in zip(old.model.parameters(), new.model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(old.ema.shadow_params, new.ema.shadow_params))
    # validation: the same samples, each frame encoded once: the loss up to float rounding
    assert new.last_val == pytest.approx(old.last_val, rel=1e-5)
