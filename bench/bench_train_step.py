"""
Training throughput (samples/s) at the default model size, and the loader's share of it.

Runs the real Trainer on synthetic episodes for a few steps after warm-up. On CUDA the
trainer uses bf16 autocast.

    python bench/bench_train_step.py [--steps 20] [--batch 64] [--device cpu] [--profile full]
        [--baseline] [--threads N]

``--profile`` measures a ``make demo`` profile's training recipe (its overrides of
``config/train.yaml``) instead of the default configuration.
"""

import argparse
import csv
from pathlib import Path
import sys
import tempfile
import time

from common import report
from kinova_policy_ros.core.config import load_experiment_config
from kinova_policy_ros.demo import PROFILES
from kinova_policy_ros.testing.synthetic import write_episodes
from kinova_policy_ros.training.train import Trainer
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--workers', type=int, default=0)
    ap.add_argument('--profile', choices=sorted(PROFILES), default=None)
    ap.add_argument('--baseline', action='store_true', help='Trainer(speedups=False)')
    ap.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: default)')
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = list(PROFILES[args.profile].train_overrides) if args.profile else []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / 'data'
        write_episodes(data, 4, num_frames=150, hw=(120, 160))
        cfg = load_experiment_config(
            None,
            [
                *recipe,
                f'train.num_steps={args.steps + 3}',
                f'train.batch_size={args.batch}',
                f'train.device={args.device}',
                f'train.num_workers={args.workers}',
                'train.log_every=1',
                'train.val_every=100000',
                'train.checkpoint_every=100000',
                'data.val_fraction=0',
            ],
        )
        t0 = time.perf_counter()
        trainer = Trainer(
            cfg,
            data,
            Path(tmp) / 'run',
            cache_dir=Path(tmp) / 'cache',
            progress=False,
            speedups=not args.baseline,
        )
        setup_s = time.perf_counter() - t0
        trainer.run()
        with open(Path(tmp) / 'run' / 'metrics.csv') as f:
            rows = list(csv.DictReader(f))
    rates = [float(r['samples_per_s']) for r in rows[3:]]  # skip warm-up steps
    report(
        'train_step',
        {
            'command': 'python bench/bench_train_step.py ' + ' '.join(sys.argv[1:]),
            'device': str(trainer.device),
            'profile': args.profile,
            'baseline': args.baseline,
            'batch_size': args.batch,
            'resize_hw': list(cfg.data.resize_hw),
            'samples_per_s_median': sorted(rates)[len(rates) // 2],
            'steps_per_s_median': sorted(rates)[len(rates) // 2] / args.batch,
            'setup_s': setup_s,
        },
    )


if __name__ == '__main__':
    main()
