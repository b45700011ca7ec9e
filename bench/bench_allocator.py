"""
Training step with freed heap memory kept for reuse against the C library's default.

``train.keep_freed_memory`` true against false, in alternating child processes (the setting is
process-wide).

Each child builds the real :class:`Trainer` on the demo's recording with the profile's recipe
and one setting, runs ``--warmup`` steps, then times ``--steps`` steps phase by phase (the loader
included) and reports steps/s, the process's user and kernel CPU seconds over the timed steps,
and a checksum of the weights after them. The parent runs ``--rounds`` rounds of
(system, keep), reports the median steps/s of each setting, their ratio, and whether the weights
agree (the setting changes where memory comes from, not the arithmetic).

    python bench/bench_allocator.py [--profile default] [--steps 30] [--rounds 3] [--threads N]
"""

import argparse
import json
from pathlib import Path
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench_train_profile import DEMO_DATA, episodes, experiment, PHASES, Timed
from common import report
from kinova_policy_ros.demo import PROFILES
from kinova_policy_ros.training.trainer import Trainer
import torch

MODES = {'system': 'false', 'keep': 'true'}


def child(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        data = episodes(args, tmp)
        cache = Path(args.cache_dir) if args.cache_dir else data.parent / 'cache'
        cfg = experiment(args, [f'train.keep_freed_memory={MODES[args.child]}'])
        torch.manual_seed(cfg.train.seed)
        trainer = Trainer(cfg, data, tmp / 'run', cache_dir=cache, progress=False)
        timed = Timed(args.child, trainer, torch.get_num_threads())
        for _ in range(args.warmup):
            timed.step()
        timed.seconds = dict.fromkeys(PHASES, 0.0)
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            timed.step()
            timed.steps += 1
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
        checksum = float(sum(p.detach().double().abs().sum() for p in trainer.model.parameters()))
    total = sum(timed.seconds.values())
    print(json.dumps({
        'mode': args.child,
        'steps_per_s': timed.steps / total,
        'ms_per_step': {k: 1000.0 * v / timed.steps for k, v in timed.seconds.items()},
        'wall_s': wall,
        'user_s': after.ru_utime - before.ru_utime,
        'kernel_s': after.ru_stime - before.ru_stime,
        'minor_page_faults': after.ru_minflt - before.ru_minflt,
        'weights_checksum': checksum,
    }))


def parent(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    passthrough = ['--profile', args.profile, '--steps', str(args.steps),
                   '--warmup', str(args.warmup), '--threads', str(args.threads)]
    if args.data:
        passthrough += ['--data', args.data]
    if args.cache_dir:
        passthrough += ['--cache-dir', args.cache_dir]
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, '--child', mode, *passthrough],
                capture_output=True, text=True, check=True,
            )
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    summary: dict[str, dict[str, Any]] = {
        mode: {
            'steps_per_s_median': median(mode, 'steps_per_s'),
            'steps_per_s_runs': [r['steps_per_s'] for r in runs[mode]],
            'user_s_median': median(mode, 'user_s'),
            'kernel_s_median': median(mode, 'kernel_s'),
            'minor_page_faults_median': median(mode, 'minor_page_faults'),
            'ms_per_step_median': {
                k: statistics.median(r['ms_per_step'][k] for r in runs[mode]) for k in PHASES
            },
        }
        for mode in MODES
    }
    checksums = {r['weights_checksum'] for rs in runs.values() for r in rs}
    report('allocator', {
        'command': 'python bench/bench_allocator.py ' + ' '.join(sys.argv[1:]),
        'profile': args.profile,
        'steps_timed_per_run': args.steps,
        'rounds': args.rounds,
        **summary,
        'ratio_steps_per_s': summary['keep']['steps_per_s_median']
        / summary['system']['steps_per_s_median'],
        'same_weights_every_run': len(checksums) == 1,
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--profile', choices=sorted(PROFILES), default='default')
    ap.add_argument('--steps', type=int, default=30, help='timed steps per child')
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--rounds', type=int, default=3, help='(system, keep) pairs of children')
    ap.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: default)')
    ap.add_argument('--data', default=None, help=f'npz episodes (default: {DEMO_DATA})')
    ap.add_argument('--cache-dir', default=None)
    ap.add_argument('--child', choices=sorted(MODES), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == '__main__':
    main()
