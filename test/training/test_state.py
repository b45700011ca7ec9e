"""Training state for an exact resume: collect, restore, and the checks before resuming."""

import dataclasses
import json
import math
from pathlib import Path
import re

from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from kinova_policy_ros.core.config import ExperimentConfig, ModelConfig
from kinova_policy_ros.core.errors import CheckpointError
from kinova_policy_ros.policy.checkpoint import (
    read_checkpoint_info,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
)
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
from kinova_policy_ros.training.state import (
    check_resumable,
    collect_training_state,
    restore_training_state,
    resume_checkpoint_path,
)
import pytest
from safetensors.torch import save_file
import torch

CFG = ExperimentConfig()
CPU = torch.device('cpu')


def parts(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 2)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = get_scheduler('cosine', opt, num_warmup_steps=2, num_training_steps=20)
    ema = EMAModel(model.parameters(), decay=0.99)
    return model, opt, sched, ema


def train_step(model, opt, sched, ema) -> None:
    x = torch.rand(16, 4)  # the global RNG: dropout and data, as in training
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    ema.step(model.parameters())
    sched.step()


def write_state(path: Path, tensors: dict, state: dict) -> Path:
    path.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / STATE_TENSORS_FILE))
    (path / STATE_JSON_FILE).write_text(json.dumps(state))
    return path


def test_restored_run_continues_bit_identically(tmp_path: Path):
    a = parts(0)
    for _ in range(3):
        train_step(*a)
    tensors, state = collect_training_state(*a, step=3, best_val=0.25, world_size=1, cfg=CFG)
    assert state['step'] == 3 and state['best_val'] == 0.25 and state['world_size'] == 1
    assert state['config']['model']['d_model'] == CFG.model.d_model
    assert {k.split('.')[0] for k in tensors} == {'model', 'optim', 'ema', 'rng'}
    ckpt = write_state(tmp_path / 'ckpt', tensors, dict(state))
    for _ in range(2):  # the uninterrupted run
        train_step(*a)
    b = parts(1)  # other weights and global RNG until restored
    assert restore_training_state(ckpt, *b, device=CPU) == (3, 0.25)
    for _ in range(2):  # the resumed run: same data and dropout draws
        train_step(*b)
    for pa, pb in zip(a[0].parameters(), b[0].parameters()):
        assert torch.equal(pa, pb)
    for sa, sb in zip(a[3].shadow_params, b[3].shadow_params):
        assert torch.equal(sa, sb)
    assert a[2].get_last_lr() == b[2].get_last_lr()
    assert a[1].state_dict()['state'][0]['step'] == b[1].state_dict()['state'][0]['step'] == 5


def test_no_best_validation_yet_round_trips_as_infinity(tmp_path: Path):
    a = parts(0)
    tensors, state = collect_training_state(*a, step=0, best_val=math.inf, world_size=2, cfg=CFG)
    assert state['best_val'] is None
    json.dumps(state)  # plain JSON: nothing pickled
    ckpt = write_state(tmp_path / 'ckpt', tensors, dict(state))
    assert restore_training_state(ckpt, *parts(1), device=CPU) == (0, math.inf)


def test_missing_or_corrupt_state_names_the_checkpoint(tmp_path: Path):
    a = parts(0)
    tensors, state = collect_training_state(*a, step=1, best_val=1.0, world_size=1, cfg=CFG)
    ckpt = write_state(tmp_path / 'ckpt', tensors, dict(state))
    (ckpt / STATE_JSON_FILE).unlink()
    with pytest.raises(CheckpointError, match=re.escape(f'{ckpt}: no resumable training state')):
        restore_training_state(ckpt, *parts(1), device=CPU)
    (ckpt / STATE_JSON_FILE).write_text(json.dumps(dict(state)))
    (ckpt / STATE_TENSORS_FILE).write_bytes(b'not safetensors')
    with pytest.raises(CheckpointError, match='no resumable training state'):
        restore_training_state(ckpt, *parts(1), device=CPU)


def test_resume_path_of_a_run_folder_is_its_last_checkpoint(tmp_path: Path):
    run = tmp_path / 'run'
    (run / 'checkpoints' / 'step_000004').mkdir(parents=True)
    (run / 'checkpoints' / 'last').symlink_to('step_000004')
    assert resume_checkpoint_path(run) == run / 'checkpoints' / 'last'
    assert resume_checkpoint_path(run / 'checkpoints') == run / 'checkpoints' / 'last'
    step = run / 'checkpoints' / 'step_000004'
    assert resume_checkpoint_path(step) == step


def test_resume_path_when_killed_before_linking_last(tmp_path: Path):
    """A run killed between writing a checkpoint and linking ``last`` resumes from it."""
    ckpts = tmp_path / 'run' / 'checkpoints'
    (ckpts / 'step_000005').mkdir(parents=True)
    assert resume_checkpoint_path(tmp_path / 'run') == ckpts / 'step_000005'  # no last yet
    (ckpts / 'last').symlink_to('step_000005')
    (ckpts / 'step_000010').mkdir()
    assert resume_checkpoint_path(ckpts) == ckpts / 'step_000010'  # last is one behind
    (ckpts / 'last').unlink()
    (ckpts / 'last').symlink_to('step_000010')
    assert resume_checkpoint_path(ckpts) == ckpts / 'last'


def test_resume_refuses_another_model_or_data_config(tmp_path: Path):
    ckpt = make_random_checkpoint(tmp_path / 'c', d_model=32, dim_feedforward=64)
    info = read_checkpoint_info(ckpt)
    same = ExperimentConfig(data=info.data, model=info.model)
    check_resumable(ckpt, info, same)
    wider = dataclasses.replace(same, model=ModelConfig(d_model=64, dim_feedforward=64))
    with pytest.raises(CheckpointError, match=r'model\.d_model is 32 in the checkpoint, 64 in'):
        check_resumable(ckpt, info, wider)
    longer = dataclasses.replace(same, data=dataclasses.replace(info.data, pred_horizon=16))
    message = re.escape(f'{ckpt}: cannot resume: data.pred_horizon is 12')
    with pytest.raises(CheckpointError, match=message):
        check_resumable(ckpt, info, longer)
