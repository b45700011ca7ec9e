"""
Data loader throughput: KinovaJointDataset vs the seed-style loader, in the same run.

Writes compressed synthetic episodes (default: 4 x 600 frames at 240x320, as in the foundation
issue), times random samples from both loaders in one worker at 96x128, and reports the ratio,
the one-off cache build time, and anonymous RAM (memory maps excluded) for a dataset of 1 and
of all episodes.

    python bench/bench_dataloader.py [--episodes 4] [--frames 600] [--seed-items 5]
"""

import argparse
import importlib.util
from pathlib import Path
import sys
import tempfile
import time

from common import report, rss_anon_mb
from kinova_policy_ros.data.dataset import KinovaJointDataset
from kinova_policy_ros.testing.synthetic import write_episodes
import numpy as np

HERE = Path(__file__).resolve().parent


def load_seed_loader(path: Path):
    spec = importlib.util.spec_from_file_location('seed_style_loader', path)
    if spec is None or spec.loader is None:
        raise SystemExit(f'cannot import the seed-style loader from {path}')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SeedStyleDataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--episodes', type=int, default=4)
    ap.add_argument('--frames', type=int, default=600)
    ap.add_argument('--native-hw', type=int, nargs=2, default=[240, 320])
    ap.add_argument('--hw', type=int, nargs=2, default=[96, 128])
    ap.add_argument('--seed-items', type=int, default=5)
    ap.add_argument('--items', type=int, default=3000)
    ap.add_argument(
        '--seed-loader',
        type=Path,
        default=HERE.parents[1] / 'shared' / 'bench' / 'seed_style_loader.py',
        help='the shared seed-style loader (baseline)',
    )
    args = ap.parse_args()
    seed_cls = load_seed_loader(args.seed_loader)
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
        stats = (ds.stats.q_min, ds.stats.q_max)
        order = rng.integers(0, len(ds), size=args.items)
        ds[0]
        t0 = time.perf_counter()
        for i in order:
            ds[int(i)]
        ours = args.items / (time.perf_counter() - t0)

        seed = seed_cls([str(f) for f in files], resize_hw=hw, stats=stats)
        order_s = rng.integers(0, len(seed), size=args.seed_items)
        t0 = time.perf_counter()
        for i in order_s:
            seed[int(i)]
        base = args.seed_items / (time.perf_counter() - t0)

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
            'command': 'python bench/bench_dataloader.py ' + ' '.join(sys.argv[1:]),
            'episodes': args.episodes,
            'frames_per_episode': args.frames,
            'native_hw': args.native_hw,
            'resize_hw': list(hw),
            'seed_style_items_per_s': base,
            'ours_items_per_s': ours,
            'ratio': ours / base,
            'cache_build_s_once': build_s,
            'anon_ram_growth': ram,
        },
    )


if __name__ == '__main__':
    main()
