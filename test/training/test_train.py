"""The training CLI: schedulers, EMA, checkpoints, exact resume after SIGKILL, DDP, progress."""

import csv
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from diffusers.optimization import get_scheduler
from kinova_policy_ros.core.config import LR_SCHEDULERS
from kinova_policy_ros.policy.checkpoint import read_checkpoint_info
from kinova_policy_ros.testing.synthetic import write_episodes
from kinova_policy_ros.training import distributed, metrics, sampling, step, train, trainer
from kinova_policy_ros.training.train import main
import numpy as np
import pytest
from safetensors.torch import load_file
import torch

TINY = [
    'data.resize_hw=[24,32]',
    'train.batch_size=8',
    'model.d_model=32',
    'model.dim_feedforward=64',
    'model.img_feat_dim=16',
    'model.q_feat_dim=8',
    'model.conv_channels=[8,16]',
    'train.log_every=1',
]


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('train_data')
    write_episodes(root / 'episodes', 5, num_frames=20, hw=(24, 32))
    return root / 'episodes'


def run_cli(data: Path, out: Path, *overrides: str, cache: Path | None = None) -> int:
    args = ['--data', str(data), '--out', str(out), '--no-progress']
    args += ['--cache-dir', str(cache or out.parent / 'cache'), *TINY, *overrides]
    return main(args)


def read_metrics(out: Path) -> list[dict]:
    with open(out / 'metrics.csv') as f:
        return list(csv.DictReader(f))


def test_run_writes_checkpoints_metrics_and_plot(data: Path, tmp_path: Path):
    out = tmp_path / 'run'
    assert (
        run_cli(data, out, 'train.num_steps=6', 'train.val_every=3', 'train.checkpoint_every=4')
        == 0
    )
    ck = out / 'checkpoints'
    names = {p.name for p in ck.iterdir()}
    assert {'best', 'last', 'step_000003', 'step_000004', 'step_000006'} <= names  # first
    # validation (always a new best), periodic, final; nothing else but later new bests
    assert names <= {'best', 'last', 'step_000003', 'step_000004', 'step_000006'}
    assert (ck / 'last').resolve().name == 'step_000006'
    cfg = json.loads((ck / 'last' / 'config.json').read_text())
    for key in ('format_version', 'model', 'data', 'stats', 'joint_names', 'dt', 'step'):
        assert key in cfg
    assert cfg['dt'] == pytest.approx(1 / 15, rel=1e-6)
    assert cfg['data']['resize_hw'] == [24, 32]
    assert cfg['weights'] == 'ema'
    assert set(cfg['train_episodes']).isdisjoint(cfg['val_episodes'])  # split by episode
    assert len(cfg['train_episodes']) + len(cfg['val_episodes']) == 5
    rows = read_metrics(out)
    assert [int(r['step']) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[2]['val_loss'] and rows[5]['val_loss'] and not rows[0]['val_loss']
    assert (out / 'loss_curve.png').stat().st_size > 1000
    best = (ck / 'best').resolve()
    best_val = float(next(r['val_loss'] for r in rows if int(r['step']) == int(best.name[5:])))
    assert best_val == min(float(r['val_loss']) for r in rows if r['val_loss'])


@pytest.mark.parametrize('name', LR_SCHEDULERS)
def test_every_diffusers_scheduler(name: str, data: Path, tmp_path: Path):
    out = tmp_path / name
    extra = ['train.lr_step_rules="1:2,0.1:4,0.01"'] if name == 'piecewise_constant' else []
    overrides = [
        'train.num_steps=5',
        f'train.lr_scheduler={name}',
        'train.lr_warmup_steps=2',
        'train.lr_num_cycles=2',
        'train.lr_power=2.0',
        'data.val_fraction=0',
        *extra,
    ]
    assert run_cli(data, out, *overrides, cache=tmp_path / 'cache') == 0
    got = [float(r['lr']) for r in read_metrics(out)]
    opt = torch.optim.AdamW(torch.nn.Linear(1, 1).parameters(), lr=3e-4)
    ref = get_scheduler(
        name,
        opt,
        step_rules='1:2,0.1:4,0.01',
        num_warmup_steps=2,
        num_training_steps=5,
        num_cycles=2,
        power=2.0,
    )
    expected: list[float] = []
    for _ in range(5):
        opt.step()
        ref.step()
        expected.append(float(ref.get_last_lr()[0]))
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_ema_is_stepped_after_each_optimizer_step(data: Path, tmp_path: Path):
    out = tmp_path / 'ema'
    overrides = [
        'train.num_steps=2',
        'train.checkpoint_every=1',
        'data.val_fraction=0',
        'train.ema.use_ema_warmup=false',
        'train.ema.decay=0.9999',
    ]
    assert run_cli(data, out, *overrides) == 0
    ck = out / 'checkpoints'
    raw1 = load_file(str(ck / 'step_000001' / 'training_state.safetensors'))
    raw2 = load_file(str(ck / 'step_000002' / 'training_state.safetensors'))
    ema1 = load_file(str(ck / 'step_000001' / 'model.safetensors'))
    ema2 = load_file(str(ck / 'step_000002' / 'model.safetensors'))
    d = 2 / 11  # diffusers' decay at optimization step 2 without warm-up: (1+1)/(10+1)
    name = 'head.2.weight'
    torch.testing.assert_close(ema1[name], raw1[f'model.{name}'])  # step 1: decay 0 -> copy
    torch.testing.assert_close(
        ema2[name], d * raw1[f'model.{name}'] + (1 - d) * raw2[f'model.{name}'], atol=1e-6, rtol=0
    )
    assert not torch.equal(ema2[name], raw2[f'model.{name}'])


def test_segment_batches_train(data: Path, tmp_path: Path):
    out = tmp_path / 'seg'
    overrides = ['train.num_steps=3', 'train.windows_per_segment=4', 'data.val_fraction=0']
    overrides += ['train.augment.q_history_dropout=0.5', 'train.augment.image_shift_px=1']
    overrides += ['data.anchor_frame=true']  # windows of 1 + K frames, frame 0 shared
    assert run_cli(data, out, *overrides) == 0
    rows = read_metrics(out)
    assert [int(r['step']) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r['train_loss'])) for r in rows)
    assert read_checkpoint_info(out / 'checkpoints' / 'last').data.anchor_frame is True
    assert run_cli(data, tmp_path / 'bad', 'train.windows_per_segment=3') == 2


def test_auxiliary_goal_loss(data: Path, tmp_path: Path, capsys):
    out = tmp_path / 'goal'
    common = ['train.num_steps=2', 'data.val_fraction=0', 'train.aux_goal_weight=1.0']
    assert run_cli(data, out, *common, 'model.goal_head=true') == 0
    weights = load_file(str(out / 'checkpoints' / 'last' / 'model.safetensors'))
    assert any(k.startswith('goal_head.') for k in weights)
    assert run_cli(data, tmp_path / 'nohead', *common) == 2
    assert 'train.aux_goal_weight is 1.0: it needs model.goal_head=true' in capsys.readouterr().err


def test_cli_errors_name_the_key(data: Path, tmp_path: Path, capsys):
    assert run_cli(data, tmp_path / 'x', 'train.num_stepz=3') == 2
    assert 'train.num_stepz: unknown key' in capsys.readouterr().err
    assert run_cli(tmp_path / 'nowhere', tmp_path / 'y', 'train.num_steps=1') == 2
    assert 'no such episode file or folder' in capsys.readouterr().err


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        '-m',
        'kinova_policy_ros.training.train',
        '--data',
        str(data),
        '--out',
        str(out),
        '--cache-dir',
        str(out.parent / 'cache'),
        '--no-progress',
        *TINY,
        *extra,
    ]


RESUME = [
    'train.num_steps=30',
    'train.checkpoint_every=5',
    'train.val_every=10',
    'model.dropout=0.2',
    'train.augment.image_shift_px=2',
    'train.augment.q_noise_std=0.05',
    'train.augment.q_history_dropout=0.3',
    'train.augment.color_jitter=0.1',
    'data.resize_hw=[48,64]',
    'model.conv_channels=[16,32,32]',
]


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(data: Path, tmp_path: Path):
    ref = tmp_path / 'ref'
    subprocess.run(_train_cmd(data, ref, *RESUME), check=True, timeout=300)
    out = tmp_path / 'killed'
    proc = subprocess.Popen(_train_cmd(data, out, *RESUME))
    try:
        deadline = time.monotonic() + 240
        while not (out / 'checkpoints' / 'step_000005' / 'config.json').exists():
            assert proc.poll() is None, 'training ended before the first checkpoint'
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = (out / 'checkpoints' / 'last').resolve().name
    assert killed_at != 'step_000030', 'the run finished before it could be killed'
    resume = subprocess.run([*_train_cmd(data, out, *RESUME), '--resume', str(out)], timeout=300)
    assert resume.returncode == 0
    for file in ('model.safetensors', 'training_state.safetensors'):
        a = load_file(str(ref / 'checkpoints' / 'step_000030' / file))
        b = load_file(str(out / 'checkpoints' / 'step_000030' / file))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f'{file}:{k} differs after resume from {killed_at}'
    rows = read_metrics(out)
    assert [int(r['step']) for r in rows] == list(range(1, 31))  # no duplicated rows


def test_resume_refuses_a_different_model(data: Path, tmp_path: Path, capsys):
    out = tmp_path / 'r'
    assert run_cli(data, out, 'train.num_steps=1', 'data.val_fraction=0') == 0
    code = run_cli(data, out, 'train.num_steps=2', 'model.d_model=64', '--resume', str(out))
    assert code == 2
    assert 'model.d_model is 32 in the checkpoint, 64 in this run' in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process(data: Path, tmp_path: Path):
    common = ['train.num_steps=4', 'model.dropout=0.0', 'data.val_fraction=0']
    single = tmp_path / 'single'
    subprocess.run(_train_cmd(data, single, *common), check=True, timeout=300)
    ddp = tmp_path / 'ddp'
    cmd = _train_cmd(data, ddp, *common)
    torchrun = [
        sys.executable,
        '-m',
        'torch.distributed.run',
        '--standalone',
        '--nproc_per_node=2',
    ]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    subprocess.run([*torchrun, *cmd[1:]], check=True, timeout=300, env=env)
    a = load_file(str(single / 'checkpoints' / 'step_000004' / 'training_state.safetensors'))
    b = load_file(str(ddp / 'checkpoints' / 'step_000004' / 'training_state.safetensors'))
    moved = 0
    for k in a:
        if k.startswith('model.'):
            torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4)
            moved += 1
    assert moved > 10
    assert (
        json.loads((ddp / 'checkpoints' / 'last' / 'training_state.json').read_text())[
            'world_size'
        ]
        == 2
    )


def test_names_of_the_split_modules_stay_importable_from_train():
    # bench/, the demo and scripts import these from training.train
    for module in (distributed, sampling, step, metrics, trainer):
        for name in train.__all__:
            if hasattr(module, name) and name != 'main':
                assert getattr(train, name) is getattr(module, name), name
    assert train.Trainer is trainer.Trainer and train.Dist is distributed.Dist
    assert {'split_episodes', 'training_device', 'StepBatchSampler', 'validate'} <= set(
        train.__all__
    )


@pytest.mark.slow
def test_progress_in_a_log_file_is_a_line_every_5_percent(data: Path, tmp_path: Path):
    out = tmp_path / 'logged'
    cmd = [a for a in _train_cmd(data, out) if a != '--no-progress']
    cmd += ['train.num_steps=40', 'train.batch_size=2', 'data.val_fraction=0']
    cmd += ['train.checkpoint_every=1000']
    log = tmp_path / 'train.log'
    with open(log, 'w') as f:  # stdout and stderr redirected to a file, as under nohup
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert '\r' not in text
    lines = [line for line in text.splitlines() if line.startswith('train:')]
    assert len(lines) <= 21
    assert [line.split()[2] for line in lines] == [f'{s}/40' for s in range(2, 41, 2)]
    assert lines[-1].startswith('train: 100% 40/40')
    assert '[train] done:' in text
