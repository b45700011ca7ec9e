"""
The training state a checkpoint carries for an exact resume, and the checks before resuming.

Next to the EMA weights (``model.safetensors``) a training checkpoint holds
``training_state.safetensors`` with the tensors ``model.*`` (raw weights),
``optim.<param>.<name>`` (AdamW state), ``ema.<i>`` (EMA shadow weights), ``rng.torch`` and
``rng.cuda.<i>`` (global RNG states: dropout), and ``training_state.json`` with the step, the best
validation loss, the optimizer's parameter groups, the scheduler and EMA settings. Nothing is
pickled. With it a run killed at any moment ends, once resumed, with bit-identical weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TypedDict

from diffusers.training_utils import EMAModel
from kinova_policy_ros.core.config import ExperimentConfig, to_dict
from kinova_policy_ros.core.config_codec import PlainValue
from kinova_policy_ros.core.errors import CheckpointError
from kinova_policy_ros.policy.checkpoint import (
    CheckpointInfo,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
)
from safetensors import SafetensorError
from safetensors.torch import load_file
import torch
from torch.optim.lr_scheduler import LRScheduler


class TrainingStateJson(TypedDict):
    """``training_state.json``: the training state that is not tensors."""

    step: int
    best_val: float | None
    param_groups: list[dict[str, object]]
    optim_state_keys: dict[str, list[str]]
    scheduler: dict[str, object]
    ema: dict[str, object]
    world_size: int
    config: dict[str, dict[str, PlainValue]]


def collect_training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    ema: EMAModel,
    step: int,
    best_val: float,
    world_size: int,
    cfg: ExperimentConfig,
) -> tuple[dict[str, torch.Tensor], TrainingStateJson]:
    """Return the tensors and the JSON of the training state (``best_val`` inf: none yet)."""
    tensors: dict[str, torch.Tensor] = {f'model.{k}': v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, st in opt['state'].items():
        for name, v in st.items():
            tensors[f'optim.{pid}.{name}'] = v
    for i, p in enumerate(ema.shadow_params):
        tensors[f'ema.{i}'] = p
    tensors['rng.torch'] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f'rng.cuda.{i}'] = s
    ema_state = {k: v for k, v in ema.state_dict().items() if k != 'shadow_params'}
    state: TrainingStateJson = {
        'step': step,
        'best_val': None if math.isinf(best_val) else best_val,
        'param_groups': opt['param_groups'],
        'optim_state_keys': {str(k): sorted(v) for k, v in opt['state'].items()},
        'scheduler': scheduler.state_dict(),
        'ema': ema_state,
        'world_size': world_size,
        'config': {'data': to_dict(cfg.data), 'model': to_dict(cfg.model)},
    }
    return tensors, state


def resume_checkpoint_path(path: Path) -> Path:
    """
    Map a run folder or its ``checkpoints`` folder to the checkpoint to resume; else ``path``.

    That is ``checkpoints/last``, or, when a run was killed after writing a checkpoint and before
    linking ``last`` to it (or before its first link), the newest ``step_*`` folder: checkpoint
    folders appear complete or not at all (written under a temp name, then renamed).
    """
    if path.name == 'checkpoints' or (path / 'checkpoints').is_dir():
        root = path if path.name == 'checkpoints' else path / 'checkpoints'
        steps = sorted(p for p in root.glob('step_*') if p.is_dir())
        last = root / 'last'
        if steps and (not last.exists() or last.resolve().name < steps[-1].name):
            return steps[-1]
        return last
    return path


def check_resumable(path: Path, info: CheckpointInfo, cfg: ExperimentConfig) -> None:
    """Refuse a checkpoint whose model or data config differs from this run's, naming the key."""
    for section, have, want in (
        ('model', to_dict(info.model), to_dict(cfg.model)),
        ('data', to_dict(info.data), to_dict(cfg.data)),
    ):
        for k in want:
            if have.get(k) != want[k]:
                raise CheckpointError(
                    f'{path}: cannot resume: {section}.{k} is {have.get(k)!r} in the '
                    f'checkpoint, {want[k]!r} in this run'
                )


def restore_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    ema: EMAModel,
    device: torch.device,
) -> tuple[int, float]:
    """Load the training state of checkpoint ``path``; return (step, best validation loss)."""
    try:
        tensors = load_file(str(path / STATE_TENSORS_FILE))
        state = json.loads((path / STATE_JSON_FILE).read_text())
    except (OSError, ValueError, SafetensorError) as err:
        raise CheckpointError(f'{path}: no resumable training state: {err}') from err
    model.load_state_dict(
        {k.removeprefix('model.'): v for k, v in tensors.items() if k.startswith('model.')}
    )
    opt_state = {
        int(pid): {name: tensors[f'optim.{pid}.{name}'] for name in names}
        for pid, names in state['optim_state_keys'].items()
    }
    optimizer.load_state_dict({'state': opt_state, 'param_groups': state['param_groups']})
    scheduler.load_state_dict(state['scheduler'])
    shadow = [tensors[f'ema.{i}'] for i in range(len(ema.shadow_params))]
    ema.load_state_dict({**state['ema'], 'shadow_params': shadow})
    ema.to(device)
    torch.set_rng_state(tensors['rng.torch'])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith('rng.cuda.')]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    best_val = math.inf if state['best_val'] is None else float(state['best_val'])
    return int(state['step']), best_val
