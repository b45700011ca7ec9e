"""
The training CLI: a thin front of the one training loop (:class:`~.trainer.Trainer`).

``train_policy --config config/train.yaml --data DIR --out DIR [k=v ...]``
(or ``python -m kinova_policy_ros.training.train ...``)
(or under ``torchrun --nproc_per_node N`` for DistributedDataParallel).

The loop lives in :mod:`.trainer`, with its parts in :mod:`.distributed` (process group and
device), :mod:`.sampling` (episode split, per-step batches, loader), :mod:`.step` (augmentation,
loss, optimizer and EMA update), :mod:`.metrics` (``metrics.csv``, validation) and :mod:`.state`
(training state for an exact resume). Their public names are importable from here too.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path
import sys
import traceback

from kinova_policy_ros.core.config import load_experiment_config
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.policy.model import count_parameters
from kinova_policy_ros.training.distributed import (
    device_kind,
    Dist,
    end_torchrun_worker,
    init_distributed,
    process_group_active,
    training_device,
)
from kinova_policy_ros.training.metrics import METRIC_FIELDS, validate
from kinova_policy_ros.training.sampling import (
    make_loader,
    sampling_cdf,
    split_episodes,
    StepBatchSampler,
)
from kinova_policy_ros.training.step import augment_images, augment_joints
from kinova_policy_ros.training.trainer import Trainer

__all__ = [
    'METRIC_FIELDS',
    'Dist',
    'StepBatchSampler',
    'Trainer',
    'augment_images',
    'augment_joints',
    'build_arg_parser',
    'device_kind',
    'init_distributed',
    'main',
    'make_loader',
    'sampling_cdf',
    'split_episodes',
    'training_device',
    'validate',
]


def build_arg_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``train_policy`` command line."""
    ap = argparse.ArgumentParser(
        prog='python -m kinova_policy_ros.training.train',
        description='Train TransformerJointGripperNoDQ on npz episodes.',
    )
    ap.add_argument('--config', type=Path, default=None, help='YAML config (default: built-in)')
    ap.add_argument('--data', type=Path, required=True, help='folder of npz episodes')
    ap.add_argument('--out', type=Path, required=True, help='output folder')
    ap.add_argument('--resume', type=Path, default=None, help='checkpoint dir or run folder')
    ap.add_argument('--cache-dir', type=Path, default=None, help='preprocessed-episode cache')
    ap.add_argument('--no-progress', action='store_true', help='no progress bar')
    ap.add_argument('overrides', nargs='*', help='dotted.key=value (value parsed as YAML)')
    return ap


def describe(trainer: Trainer) -> str:
    """Return the one-line summary of a run printed before training."""
    return (
        f'[train] {len(trainer.train_ds)} samples from {len(trainer.train_files)} '
        f'episodes, {len(trainer.val_files)} validation episodes, '
        f'{count_parameters(trainer.model):,} parameters, device {trainer.device}, '
        f'{trainer.d.world} process(es), dt {trainer.dt * 1000:.1f} ms'
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Train; return 0, or 2 after printing a configuration or data error."""
    args = build_arg_parser().parse_args(argv)
    code = 1
    try:
        cfg = load_experiment_config(args.config, args.overrides)
        trainer = Trainer(
            cfg, args.data, args.out, args.resume, args.cache_dir, not args.no_progress
        )
        if trainer.d.main:
            print(describe(trainer), flush=True)
        path = trainer.run()
        if trainer.d.main:
            print(f'[train] done: {path}', flush=True)
        code = 0
        return code
    except KinovaPolicyError as err:
        print(f'error: {err}', file=sys.stderr)
        code = 2
        return code
    except BaseException:
        if process_group_active():
            traceback.print_exc()  # the worker exits below, before Python would print it
        raise
    finally:
        if process_group_active():
            end_torchrun_worker(code)


if __name__ == '__main__':
    sys.exit(main())
