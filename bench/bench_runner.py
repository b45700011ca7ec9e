"""
PolicyRunner step latency: cached frame tokens vs full-window recompute, same run.

One control step = push_observation (decode-size frame -> model size -> token) + predict.
Default model size (ModelConfig defaults) at 96x128 input from 480x640 camera frames.

    python bench/bench_runner.py [--steps 200] [--native-hw 480 640] [--device cpu]
"""

import argparse
import sys
import tempfile
import time

from common import percentiles_ms, report
from kinova_policy_ros.policy.inference import PolicyRunner
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
import numpy as np
import torch


def run(runner: PolicyRunner, frames, steps: int) -> list[float]:
    rgb, depth, q = frames
    runner.reset()
    for _ in range(runner.obs_horizon):  # fill the window, warm up
        runner.push_observation(rgb, depth, q)
        runner.predict()
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        runner.push_observation(rgb, depth, q + 1e-4 * i)
        runner.predict()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=200)
    ap.add_argument('--native-hw', type=int, nargs=2, default=[480, 640])
    ap.add_argument('--hw', type=int, nargs=2, default=[96, 128])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=1, help="torch threads (the node's default: 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    h, w = args.native_hw
    frames = (
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        rng.uniform(0.3, 2.0, (h, w)).astype(np.float32),
        np.zeros(7),
    )
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_random_checkpoint(tmp + '/ckpt', image_hw=tuple(args.hw))
        cached_runner = PolicyRunner.from_checkpoint(ckpt, args.device, use_cache=True)
        full_runner = PolicyRunner.from_checkpoint(ckpt, args.device, use_cache=False)
        cached = run(cached_runner, frames, args.steps)
        full = run(full_runner, frames, args.steps)
    c, f = percentiles_ms(cached), percentiles_ms(full)
    report(
        'runner',
        {
            'command': 'python bench/bench_runner.py ' + ' '.join(sys.argv[1:]),
            'native_hw': args.native_hw,
            'model_hw': args.hw,
            'device': args.device,
            'torch_threads': args.threads,
            'cached': c,
            'full_window': f,
            'speedup_p50': f['p50_ms'] / c['p50_ms'],
            'speedup_p99': f['p99_ms'] / c['p99_ms'],
        },
    )


if __name__ == '__main__':
    main()
