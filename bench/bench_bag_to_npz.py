"""
Benchmark of the rosbag2 -> npz converter against a raw rosbags read of the same bag.

Writes a synthetic 640x480 RGB-D demonstration bag (rgb8 + 16UC1 at 30 Hz, joint states at
100 Hz, TF, CameraInfo), then measures in the same run:

* ``raw``: rosbags ``AnyReader`` read + ``deserialize`` of every message of the bag (baseline);
* ``convert``: the converter on the same bag, uncompressed npz (frames streamed into the file
  while the bag is read) and compressed npz;
* ``np.savez``: writing arrays of the output's size with numpy's writer, for scale (the
  converter's own writer overlaps the read, so this is no longer a floor);
* a fresh process converting the bag: its wall time (``cold``: first-touch page faults of the
  output arrays, imports excluded) and peak RSS (VmHWM) against the size of the arrays it writes.

Goals: conversion throughput >= 0.5x raw (uncompressed npz; the zlib of the
compressed npz is reported separately), peak RSS <= 2x output size.

The process runs with the malloc tuning ``bag_to_npz`` uses (:func:`reuse_freed_memory`), for the
baseline and the converter alike; ``--default-malloc`` measures without it.

    python bench/bench_bag_to_npz.py [--quick] [--frames N] [--json OUT.json]
    # kinova_vision sizes (colour 1280x720 rgb8, depth 480x270 16UC1), to the model size:
    python bench/bench_bag_to_npz.py --rgb-size 720x1280 --depth-size 270x480 --resize 96x128
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any
import zipfile

from kinova_policy_ros.bag.cli import reuse_freed_memory
from kinova_policy_ros.bag.convert import convert_bag, ConvertOptions
from kinova_policy_ros.bag.reader import BagSource
from kinova_policy_ros.testing.bag_synthetic import SynthSpec, write_bag
import numpy as np


def raw_read(bag: Path) -> tuple[float, int]:
    """Return seconds and message count of a plain rosbags read + deserialize of ``bag``."""
    start = time.perf_counter()
    n = 0
    with BagSource(bag) as src:
        reader = src.reader
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)
            n += 1
    return time.perf_counter() - start, n


def npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and dtype of every member of an npz, from the ``.npy`` headers only."""
    out = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            with z.open(name) as f:
                major, _ = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(f)
            out[name.removesuffix('.npy')] = (shape, dtype.str)
    return out


def _hw(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (argparse type)."""
    h, w = (int(v) for v in text.lower().split('x'))
    return h, w


def convert(
    bag: Path, out: Path, compress: bool, resize: tuple[int, int] | None = None
) -> tuple[float, int, dict[str, Any]]:
    """Convert into a new directory ``out``; return seconds, npz bytes and array shapes."""
    opts = ConvertOptions(compress=compress, progress=False, resize=resize)
    start = time.perf_counter()
    paths, _ = convert_bag(bag, out, opts)
    elapsed = time.perf_counter() - start
    shapes = npz_shapes(paths[0])
    size = paths[0].stat().st_size
    paths[0].unlink()  # keep the page cache and the disk out of the next repeat
    return elapsed, size, shapes


def write_floor(shapes: dict[str, tuple[tuple[int, ...], str]], out: Path) -> tuple[float, int]:
    """Seconds to allocate, fill and ``np.savez`` arrays of the given shapes to a new file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    arrays = {k: np.ones(shape, dtype) for k, (shape, dtype) in shapes.items()}
    np.savez(out, **arrays)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    out.unlink()
    return elapsed, 0


def _status_kib(field: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(bag: str, out: str, resize: tuple[int, int] | None) -> None:
    """Convert in this fresh process and print RSS figures (KiB) as JSON."""
    before = _status_kib('VmHWM')
    start = time.perf_counter()
    opts = ConvertOptions(compress=False, progress=False, resize=resize)
    paths, _ = convert_bag(bag, out, opts)
    cold = time.perf_counter() - start
    peak = _status_kib('VmHWM')
    with np.load(paths[0]) as z:
        nbytes = int(sum(z[k].nbytes for k in z.files))
    print(
        json.dumps(
            {
                'rss_after_imports_kib': before,
                'peak_rss_kib': peak,
                'array_bytes': nbytes,
                'cold_convert_s': cold,
            }
        )
    )


def best(fn: Any, repeats: int) -> Any:
    """Best of ``repeats`` timed calls after one untimed warm-up call (first-touch effects)."""
    fn()
    results = [fn() for _ in range(repeats)]
    return min(results, key=lambda r: r[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    p.add_argument('--quick', action='store_true', help='30 frames, 1 repeat (smoke test)')
    p.add_argument('--frames', type=int, default=150, help='RGB frames (30 Hz)')
    p.add_argument('--repeats', type=int, default=5, help='timed runs after one warm-up')
    p.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    p.add_argument('--noise', type=int, default=6, help='camera-like noise (0: smooth frames)')
    p.add_argument('--rgb-size', type=_hw, default=(480, 640), metavar='HxW', help='colour')
    p.add_argument('--depth-size', type=_hw, default=None, metavar='HxW', help='(colour size)')
    p.add_argument('--resize', type=_hw, default=None, metavar='HxW', help='converter --resize')
    p.add_argument('--json', help='write the figures to this JSON file')
    p.add_argument('--child', nargs=2, metavar=('BAG', 'OUT'), help=argparse.SUPPRESS)
    p.add_argument(
        '--default-malloc',
        action='store_true',
        help="keep glibc's default malloc tuning (bag_to_npz sets reuse_freed_memory)",
    )
    args = p.parse_args(argv)
    # the process tuning bag_to_npz runs with, for the baseline and the converter alike
    tuned = not args.default_malloc and reuse_freed_memory()
    if args.child:
        child(args.child[0], args.child[1], args.resize)
        return 0
    frames, repeats = (30, 1) if args.quick else (args.frames, args.repeats)
    with tempfile.TemporaryDirectory(prefix='bench_bag_to_npz_') as tmp:
        bag = Path(tmp) / 'bench_bag'
        (h, w), depth_hw = args.rgb_size, args.depth_size or args.rgb_size
        spec = SynthSpec(
            n_frames=frames,
            height=h,
            width=w,
            depth_hw=depth_hw,
            storage=args.storage,
            noise=args.noise,
        )
        t0 = time.perf_counter()
        write_bag(bag, spec)
        bag_bytes = sum(f.stat().st_size for f in bag.iterdir())
        print(
            f'wrote {frames} frames {w}x{h} RGB, {depth_hw[1]}x{depth_hw[0]} depth '
            f'({bag_bytes / 1e6:.1f} MB, '
            f'{args.storage}) in {time.perf_counter() - t0:.1f} s',
            flush=True,
        )
        raw_s, n_msgs = best(lambda: raw_read(bag), repeats)
        runs = iter(range(10_000))

        def fresh(name: str) -> Path:
            return Path(tmp) / f'{name}{next(runs)}'

        conv_s, npz_bytes, shapes = best(
            lambda: convert(bag, fresh('out'), compress=False, resize=args.resize), repeats
        )
        floor_s, _ = best(lambda: write_floor(shapes, fresh('floor') / 'x.npz'), repeats)
        comp_s, npzc_bytes, _ = best(
            lambda: convert(bag, fresh('outc'), compress=True, resize=args.resize), repeats
        )
        child_args = ['--child', str(bag), str(Path(tmp) / 'outr')]
        if args.default_malloc:
            child_args.append('--default-malloc')
        if args.resize:
            child_args += ['--resize', f'{args.resize[0]}x{args.resize[1]}']
        proc = subprocess.run(
            [sys.executable, __file__, *child_args],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        rss = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = rss['peak_rss_kib'] * 1024
    figures = {
        'frames': frames,
        'rgb_hw': f'{h}x{w}',
        'depth_hw': f'{depth_hw[0]}x{depth_hw[1]}',
        'resize': f'{args.resize[0]}x{args.resize[1]}' if args.resize else 'none',
        'storage': args.storage,
        'malloc_reuses_freed_memory': tuned,
        'bag_mb': bag_bytes / 1e6,
        'messages': n_msgs,
        'raw_read_s': raw_s,
        'convert_s': conv_s,
        'convert_compressed_s': comp_s,
        'throughput_ratio': raw_s / conv_s,
        'throughput_ratio_compressed': raw_s / comp_s,
        'np_savez_same_arrays_s': floor_s,
        'cold_convert_s': rss['cold_convert_s'],
        'convert_fps': frames / conv_s,
        'npz_mb': npz_bytes / 1e6,
        'npz_compressed_mb': npzc_bytes / 1e6,
        'array_mb': rss['array_bytes'] / 1e6,
        'peak_rss_mb': peak / 1e6,
        'rss_after_imports_mb': rss['rss_after_imports_kib'] * 1024 / 1e6,
        'peak_rss_over_output': peak / rss['array_bytes'],
        'added_rss_over_output': (peak - rss['rss_after_imports_kib'] * 1024) / rss['array_bytes'],
    }
    print('| figure | value |\n|---|---|')
    for key, value in figures.items():
        print(f'| {key} | {value:.3f} |' if isinstance(value, float) else f'| {key} | {value} |')
    ok_speed = figures['throughput_ratio'] >= 0.5
    ok_mem = figures['peak_rss_over_output'] <= 2.0
    print(
        f'goal throughput >= 0.5x raw: {"met" if ok_speed else "NOT met"}; '
        f'goal peak RSS <= 2x output: {"met" if ok_mem else "NOT met"}'
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
