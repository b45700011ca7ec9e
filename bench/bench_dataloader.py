"""
Data loader throughput: KinovaJointDataset vs a naive per-item loader, in the same run.

Writes compressed synthetic episodes (default: 4 x 600 frames at 240x320), times random samples
from both loaders in one worker at 96x128, and reports the ratio, the one-off cache build time,
and anonymous RAM (memory maps excluded) for a dataset of 1 and of all episodes. The baseline,
``naive_loader.NaiveEpisodeDataset`` beside this file, opens the npz and resizes and normalises
every frame of the window on every access, with no cache.

    python bench/bench_dataloader.py [--episodes 4] [--frames 600] [--baseline-items 5]
"""

import argparse
from pathlib import Path
import sys
import tempfile
import time

from common import report, rss_anon_mb
from kinova_policy_ros.data.dataset import KinovaJointDataset
from kinova_policy_ros.testing.synthetic import write_episodes
from naive_loader import NaiveEpisodeDataset
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--episodes', type=int, default=4)
    ap.add_argument('--frames', type=int, default=600)
    ap.add_argument('--native-hw', type=int, nargs=2, default=[240, 320])
    ap.add_argument('--hw', type=int, nargs=2, default=[96, 128])
    ap.add_argument(
        '--baseline-items', type=int, default=5, help='samples timed from the naive loader'
    )
    ap.add_argument('--items', type=int, default=3000, help='samples timed from ours')
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / 'episodes'
        files = write_episodes(
            data, args.episodes, num_frames=args.frames, hw=tuple(args.native_hw), compress=True
        )
        rng = np.random.default_rng(0)
        hw = tuple(args.hw)

        t0 = time.perf_counter()
        ds = KinovaJointDataset(data, resize_hw=hw, cache_dir=Path(tmp) / 'cache')
        build_s = time.perf_counter() - t0
        stats = {k: getattr(ds.stats, k) for k in ('q_min', 'q_max', 'dq_min', 'dq_max')}
        order = rng.integers(0, len(ds), size=args.items)
        ds[0]
        t0 = time.perf_counter()
        for i in order:
            ds[int(i)]
        ours = args.items / (time.perf_counter() - t0)

        naive = NaiveEpisodeDataset(files, resize_hw=hw, stats=stats)
        order_b = rng.integers(0, len(naive), size=args.baseline_items)
        t0 = time.perf_counter()
        for i in order_b:
            naive[int(i)]
        base = args.baseline_items / (time.perf_counter() - t0)

        # Anonymous RAM: a dataset of one episode vs of all, after reading every sample.
        ram = {}
        for n in (1, args.episodes):
            before = rss_anon_mb()
            d = KinovaJointDataset(files[:n], resize_hw=hw, cache_dir=Path(tmp) / 'cache')
            for i in range(0, len(d), 7):
                d[i]
            ram[f'{n}_episodes_mb'] = rss_anon_mb() - before
            del d
    report(
        'dataloader',
        {
            'command': ' '.join(['python bench/bench_dataloader.py', *sys.argv[1:]]),
            'episodes': args.episodes,
            'frames_per_episode': args.frames,
            'native_hw': args.native_hw,
            'resize_hw': list(hw),
            'baseline': 'bench/naive_loader.py (np.load + resize + normalise per item)',
            'baseline_items_per_s': base,
            'ours_items_per_s': ours,
            'ratio': ours / base,
            'cache_build_s_once': build_s,
            'anon_ram_growth': ram,
        },
    )


if __name__ == '__main__':
    main()
