"""
Where a training step's time goes, before and after the trainer's speed-ups, in ONE run.

Builds two :class:`Trainer` s on the same data, one with ``speedups=False`` (the per-tensor
AdamW and clipping loops and the per-window validation of before) and one as trained now, and
times their steps interleaved (step by step, so both see the same machine load) phase by phase:
the loader, batch layout, forward + loss, backward, gradient clipping, optimizer, EMA and the
schedule; then their validations, interleaved too. Reports ms per step of each phase, steps/s
and the after/before ratios. On a shared machine only the ratios mean much.

    python bench/bench_train_profile.py [--profile default] [--steps 60] [--data DIR]
        [--cache-dir DIR] [--val-reps 2] [--threads N] [--baseline | --current]
        [--same-result STEPS]

``--data`` defaults to ``runs/demo_default/episodes`` (the demo's recording) when it exists,
else synthetic episodes. ``--baseline`` / ``--current`` time only that one trainer.
``--same-result N`` instead trains both for N steps, one after the other, and compares their
``metrics.csv`` and final weights (the training is bit-identical; the validation loss differs
by float rounding only).
"""

import argparse
import csv
import math
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

from common import report
from kinova_policy_ros.core.config import ExperimentConfig, load_experiment_config
from kinova_policy_ros.demo import PROFILES, REPO_CONFIG
from kinova_policy_ros.testing.synthetic import write_episodes
from kinova_policy_ros.training.metrics import validate
from kinova_policy_ros.training.sampling import training_loader
from kinova_policy_ros.training.step import prepare_batch, step_loss
from kinova_policy_ros.training.trainer import Trainer
import torch

PHASES = ('load', 'prepare', 'forward_loss', 'backward', 'clip', 'optimizer', 'ema', 'schedule')
DEMO_DATA = Path('runs/demo_default/episodes')


class Timed:
    """One trainer, its loader, and the seconds spent per phase."""

    def __init__(self, name: str, trainer: Trainer, threads: int) -> None:
        self.name, self.t, self.threads = name, trainer, threads
        tc = trainer.cfg.train
        self.batches = iter(training_loader(trainer.train_ds, tc, 0, trainer.d, pin=False))
        self.amp = torch.autocast('cuda', dtype=torch.bfloat16, enabled=False)
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.steps = 0
        self.val_s: list[float] = []
        self.val_loss = math.nan

    def step(self) -> None:
        """Run one training step as ``Trainer.run`` does, timing each phase."""
        t, tc = self.t, self.t.cfg.train
        torch.set_num_threads(self.threads)
        marks = [time.perf_counter()]
        raw = next(self.batches)
        marks.append(time.perf_counter())
        t.model.train()
        batch, window_index = prepare_batch(raw, tc, t.step, t.device)
        marks.append(time.perf_counter())
        loss = step_loss(
            t.model, batch, window_index, t.cfg.data.pred_horizon, tc.aux_goal_weight, self.amp
        )
        marks.append(time.perf_counter())
        t.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), tc.grad_clip, foreach=t.speedups)
        marks.append(time.perf_counter())
        t.optimizer.step()
        marks.append(time.perf_counter())
        t.ema.step(t.model.parameters())
        marks.append(time.perf_counter())
        t.scheduler.step()
        marks.append(time.perf_counter())
        for name, a, b in zip(PHASES, marks, marks[1:]):
            self.seconds[name] += b - a
        t.step += 1

    def validate(self, weights: Trainer) -> None:
        """Time one validation of ``weights``' EMA weights (the same for every variant)."""
        t = self.t
        if t.val_ds is None:
            return
        torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        weights.ema.copy_to(t.eval_model.parameters())
        self.val_loss = validate(
            t.eval_model, t.val_ds, t.device, t.cfg.data.pred_horizon, shared_frames=t.speedups
        )
        self.val_s.append(time.perf_counter() - t0)

    def summary(self, cfg: ExperimentConfig) -> dict[str, Any]:
        total = sum(self.seconds.values())
        per_step = {k: 1000.0 * v / self.steps for k, v in self.seconds.items()}
        val_s = min(self.val_s) if self.val_s else 0.0
        tc = cfg.train
        validations = tc.num_steps // tc.val_every if self.t.val_ds is not None else 0
        return {
            'torch_threads': self.threads,
            'steps_per_s': self.steps / total,
            'ms_per_step': per_step,
            'validation_s': val_s,
            'validation_loss': self.val_loss,
            'val_samples': 0 if self.t.val_ds is None else len(self.t.val_ds),
            # the profile's training loop: its steps plus its validations, no checkpoints
            'profile_train_estimate_s': tc.num_steps * total / self.steps + validations * val_s,
        }


def experiment(args: argparse.Namespace, extra: list[str]) -> ExperimentConfig:
    recipe = list(PROFILES[args.profile].train_overrides)
    return load_experiment_config(REPO_CONFIG, [*recipe, 'train.device=cpu', *extra])


def episodes(args: argparse.Namespace, tmp: Path) -> Path:
    if args.data is not None:
        return Path(args.data)
    if DEMO_DATA.is_dir():
        return DEMO_DATA
    write_episodes(tmp / 'data', 12, num_frames=80, hw=(120, 160))
    return tmp / 'data'


def profile_steps(args: argparse.Namespace, data: Path, cache: Path, tmp: Path) -> None:
    cfg = experiment(args, [])
    threads = torch.get_num_threads()
    variants = [('baseline', False, threads), ('current', True, threads)]
    if args.baseline or args.current:
        variants = [v for v in variants if v[1] == bool(args.current)]
    if args.also_threads:
        variants.append((f'current_{args.also_threads}_threads', True, args.also_threads))
    timed = []
    for name, fast, n in variants:
        torch.manual_seed(cfg.train.seed)
        trainer = Trainer(cfg, data, tmp / name, cache_dir=cache, progress=False, speedups=fast)
        timed.append(Timed(name, trainer, n))
    for _ in range(args.warmup):  # not timed: first-call allocations, caches
        for v in timed:
            v.step()
    for v in timed:
        v.seconds = dict.fromkeys(PHASES, 0.0)
    for _ in range(args.steps):
        for v in timed:
            v.step()
            v.steps += 1
    for _ in range(args.val_reps):
        for v in timed:
            v.validate(timed[0].t)
    result: dict[str, Any] = {
        'command': 'python bench/bench_train_profile.py ' + ' '.join(sys.argv[1:]),
        'profile': args.profile,
        'data': str(data),
        'train_samples': len(timed[0].t.train_ds),
        'batch_size': cfg.train.batch_size,
        'steps_timed': args.steps,
        'torch_threads': threads,
        **{v.name: v.summary(cfg) for v in timed},
    }
    torch.set_num_threads(threads)
    if 'baseline' in result and 'current' in result:
        before, after = result['baseline'], result['current']
        if args.also_threads:
            other = result[timed[-1].name]
            result['ratio_threads'] = other['steps_per_s'] / after['steps_per_s']
        result['ratio'] = {
            'steps_per_s': after['steps_per_s'] / before['steps_per_s'],
            'validation': before['validation_s'] / max(after['validation_s'], 1e-9),
            # the same EMA weights validated both ways: float rounding only
            'validation_loss_reldiff': abs(after['validation_loss'] - before['validation_loss'])
            / max(abs(before['validation_loss']), 1e-12),
            'profile_train_estimate': before['profile_train_estimate_s']
            / after['profile_train_estimate_s'],
            **{
                f'{k}_ms': before['ms_per_step'][k] / max(after['ms_per_step'][k], 1e-9)
                for k in PHASES
            },
        }
    report('train_profile', result)


def same_result(args: argparse.Namespace, data: Path, cache: Path, tmp: Path) -> None:
    n = args.same_result
    every = max(1, n // 4)
    cfg = experiment(
        args,
        [f'train.num_steps={n}', f'train.val_every={every}', 'train.log_every=10',
         f'train.checkpoint_every={n}'],
    )
    rows, weights, seconds = {}, {}, {}
    for name, fast in (('baseline', False), ('current', True)):
        t0 = time.perf_counter()
        trainer = Trainer(cfg, data, tmp / name, cache_dir=cache, progress=False, speedups=fast)
        trainer.run()
        seconds[name] = time.perf_counter() - t0
        with open(tmp / name / 'metrics.csv') as f:
            rows[name] = list(csv.DictReader(f))
        weights[name] = [p.detach().clone() for p in trainer.model.parameters()]
    train_same = [r['train_loss'] for r in rows['baseline']] == [
        r['train_loss'] for r in rows['current']
    ]
    vals = [
        (int(a['step']), float(a['val_loss']), float(b['val_loss']))
        for a, b in zip(rows['baseline'], rows['current'])
        if a['val_loss']
    ]
    report(
        'train_same_result',
        {
            'command': 'python bench/bench_train_profile.py ' + ' '.join(sys.argv[1:]),
            'steps': n,
            'train_loss_rows_identical': train_same,
            'final_weights_identical': all(
                torch.equal(a, b) for a, b in zip(weights['baseline'], weights['current'])
            ),
            'val_loss_baseline_current_reldiff': [
                [s, a, b, abs(a - b) / max(abs(a), 1e-12)] for s, a, b in vals
            ],
            'wall_s_one_after_the_other': seconds,
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--profile', choices=sorted(PROFILES), default='default')
    ap.add_argument('--steps', type=int, default=60, help='timed steps per trainer')
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--val-reps', type=int, default=2, help='timed validations per trainer')
    ap.add_argument('--data', default=None, help='npz episodes (default: the demo recording)')
    ap.add_argument('--cache-dir', default=None)
    ap.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: default)')
    only = ap.add_mutually_exclusive_group()
    only.add_argument('--baseline', action='store_true', help='only the old behaviour')
    only.add_argument('--current', action='store_true', help='only the current trainer')
    ap.add_argument(
        '--also-threads',
        type=int,
        default=0,
        metavar='N',
        help='time a third trainer, the current one with torch.set_num_threads(N), interleaved',
    )
    ap.add_argument('--same-result', type=int, default=0, metavar='STEPS')
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = episodes(args, tmp)
        cache = Path(args.cache_dir) if args.cache_dir else tmp / 'cache'
        if args.same_result:
            same_result(args, data, cache, tmp)
        else:
            profile_steps(args, data, cache, tmp)


if __name__ == '__main__':
    main()
