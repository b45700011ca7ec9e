"""
Record seeded expert demonstrations of the simulated Gen3 as rosbag2 files.

Usage::

    python -m kinova_policy_ros.sim.ros.record_demos --out DIR --episodes N --seed S
        [--storage mcap|sqlite3] [--workers W] [--via-dds]

Offline (default): the simulator, the expert and the bag writer run in one process per worker
without DDS; the messages are the simulator node's, serialized by rclpy (about 0.5-1 s of CPU
per 5 s episode). ``--via-dds`` starts the simulator node, the expert node and a raw-subscription
recorder and records in real time, like ``ros2 bag record`` next to a robot. One bag per episode:
``DIR/episode_<seed>``; ``DIR/episodes.json`` lists seeds, targets and final distances.

SIGINT / SIGTERM stop the recording cleanly (exit code 0, no traceback): the episodes finished
so far in this process are listed in ``episodes.json`` (the episode in progress is finished
first); the worker processes of ``--workers`` (which ignore SIGINT: a Ctrl-C to the process
group is the parent's to handle) are terminated and reaped, so no child outlives the recorder.
"""

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
import itertools
import multiprocessing
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.ros import signals
from kinova_policy_ros.sim.env import Gen3Sim
from kinova_policy_ros.sim.expert import DemoVariation, ExpertConfig
from kinova_policy_ros.sim.mjcf import SceneConfig
from kinova_policy_ros.sim.ros.expert_node import ExpertNode
from kinova_policy_ros.sim.ros.processes import sim_node_command, stop_process
from kinova_policy_ros.sim.ros.recorder import (
    BagRecorder,
    RecordingRates,
    success_rate,
    write_expert_episode,
    write_manifest,
)
from kinova_policy_ros.sim.ros.services import call_trigger, wait_for
import rclpy
from rclpy.executors import SingleThreadedExecutor


@dataclass(frozen=True)
class RecordOptions:
    """What ``record_offline`` needs besides the seeds (picklable for worker processes)."""

    storage: str = 'mcap'
    scene: SceneConfig = field(default_factory=SceneConfig)
    rates: RecordingRates = field(default_factory=RecordingRates)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    settle_time: float = 1.0
    start_noise: float = 0.1
    variation: DemoVariation = field(default_factory=DemoVariation)


def _record_chunk(
    out: Path, seeds: Sequence[int], options: RecordOptions, verbose: bool
) -> list[dict[str, Any]]:
    episodes = []
    sim = Gen3Sim(options.scene, start_noise=options.start_noise)
    try:
        for seed in seeds:
            if signals.stop_requested():
                break
            t0 = time.perf_counter()
            entry = write_expert_episode(
                sim,
                seed,
                out / f'episode_{seed:06d}',
                storage=options.storage,
                rates=options.rates,
                expert=options.expert,
                settle_time=options.settle_time,
                variation=options.variation,
            )
            entry['wall_s'] = time.perf_counter() - t0
            episodes.append(entry)
            if verbose:
                print(
                    f'episode seed={seed}: {entry["duration_s"]:.1f} s simulated, final distance '
                    f'{1000 * entry["final_distance"]:.1f} mm, {entry["wall_s"]:.2f} s wall',
                    flush=True,
                )
    finally:
        sim.close()
    return episodes


def record_offline(
    out: str | Path,
    seeds: Sequence[int],
    options: RecordOptions | None = None,
    workers: int = 1,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """
    Write one bag per seed into ``out`` without DDS; return the manifest entries (seed order).

    ``workers > 1`` splits the seeds over that many spawned processes (one renderer each).
    After a stop request (:mod:`~kinova_policy_ros.ros.signals`) the episodes finished so far
    in this process are returned and listed in the manifest (with workers: none; they are
    terminated and reaped, their finished bags stay in ``out``).
    """
    opts = options or RecordOptions()
    if workers < 1:
        raise ConfigError(f'workers must be >= 1, got {workers}')
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = list(seeds)
    if workers == 1 or len(seeds) == 1:
        episodes = _record_chunk(out_dir, seeds, opts, verbose)
    else:
        chunks = [seeds[i::workers] for i in range(workers) if seeds[i::workers]]
        episodes = _record_in_workers(out_dir, chunks, opts, verbose)
        episodes.sort(key=lambda e: seeds.index(e['seed']))
    write_manifest(out_dir, episodes)
    return episodes


def _worker_init() -> None:
    """Ignore SIGINT in a worker: a Ctrl-C to the process group is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _record_in_workers(
    out: Path, chunks: Sequence[Sequence[int]], options: RecordOptions, verbose: bool
) -> list[dict[str, Any]]:
    """Record each chunk in a spawned worker; on a stop request terminate them (and reap)."""
    ctx = multiprocessing.get_context('spawn')
    pool = ctx.Pool(len(chunks), initializer=_worker_init)
    try:
        results = [
            pool.apply_async(_record_chunk, (out, list(c), options, verbose)) for c in chunks
        ]
        while not all(r.ready() for r in results):
            if signals.stop_requested():
                pool.terminate()
                return []
            results[0].wait(0.1)
        pool.close()
        return [e for r in results for e in r.get()]
    finally:
        pool.terminate()
        pool.join()


# -- over DDS -------------------------------------------------------------------------------------


def record_via_dds(
    out: Path,
    seeds: Sequence[int],
    storage: str = 'mcap',
    scene: SceneConfig | None = None,
    camera_hz: float = 15.0,
    settle_time: float = 1.0,
    verbose: bool = True,
    startup_timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Record one bag per seed (consecutive seeds) into ``out`` over DDS, in real time."""
    if any(b - a != 1 for a, b in itertools.pairwise(seeds)):
        raise KinovaPolicyError(f'--via-dds records consecutive seeds, got {list(seeds)}')
    cfg = scene or SceneConfig()
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(sim_node_command(seeds[0], cfg, camera_hz), env=dict(os.environ))
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    episodes: list[dict[str, Any]] = []
    try:
        expert = ExpertNode(context=context)
        recorder = BagRecorder(storage=storage, context=context)
        executor.add_node(expert)
        executor.add_node(recorder)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        for i, seed in enumerate(seeds):
            if signals.stop_requested():
                break
            service = '/sim_node/reset_to_seed' if i == 0 else '/sim_node/reset'
            episode = call_trigger(expert, service, timeout=startup_timeout if i == 0 else 10.0)
            if episode['seed'] != seed:
                raise KinovaPolicyError(f'sim_node reset to seed {episode["seed"]}, not {seed}')
            path = out / f'episode_{seed:06d}'
            recorder.start(path)
            index = int(episode['episode'])

            def planned(e: int = index) -> bool:
                return expert.planned_episode == e

            wait_for(planned, 30.0, f'the expert plan of seed {seed}')
            assert expert.last_plan is not None
            time.sleep(expert.last_plan.duration + settle_time)
            recorder.stop()
            task = expert._task or {}
            entry = {
                'bag': path.name,
                'seed': seed,
                'target': episode['target'],
                'final_distance': float(task.get('distance', float('nan'))),
                'success': bool(task.get('success', False)),
            }
            episodes.append(entry)
            if verbose:
                print(
                    f'episode seed={seed}: final distance '
                    f'{1000 * entry["final_distance"]:.1f} mm (over DDS)',
                    flush=True,
                )
    finally:
        executor.shutdown(timeout_sec=5.0)
        rclpy.try_shutdown(context=context)
        stop_process(proc)
    write_manifest(out, episodes)
    return episodes


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(
        prog='record_demos', description='Record seeded expert demonstrations as rosbag2 files.'
    )
    p.add_argument('--out', required=True, type=Path, help='output directory, one bag/episode')
    p.add_argument('--episodes', type=int, default=10, help='number of episodes')
    p.add_argument('--seed', type=int, default=0, help='seed of the first episode (then +1 ...)')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    p.add_argument('--workers', type=int, default=1, help='offline: parallel processes')
    p.add_argument('--via-dds', action='store_true', help='record over DDS in real time')
    p.add_argument('--image-width', type=int, default=128)
    p.add_argument('--image-height', type=int, default=96)
    p.add_argument('--camera-hz', type=float, default=15.0)
    p.add_argument('--start-noise', type=float, default=0.1, help='rad, start pose perturbation')
    p.add_argument('--settle-time', type=float, default=1.0, help='hold after the reach, s')
    p.add_argument(
        '--recovery-fraction',
        type=float,
        default=0.0,
        help='offline: share of episodes starting at rest near the target instead of home',
    )
    p.add_argument(
        '--recovery-tilt-deg',
        type=float,
        default=0.0,
        help='offline: largest tilt of the tool from straight down at a recovery start, deg',
    )
    p.add_argument(
        '--pause-fraction',
        type=float,
        default=0.0,
        help='offline: share of episodes whose reach pauses once, then re-plans',
    )
    p.add_argument('--quiet', action='store_true')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``record_demos``."""
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        print('record_demos: --episodes must be >= 1', file=sys.stderr)
        return 2
    seeds = list(range(args.seed, args.seed + args.episodes))
    scene = SceneConfig(image_width=args.image_width, image_height=args.image_height)
    t0 = time.perf_counter()
    previous = signals.install()  # SIGINT / SIGTERM: stop after the episode in progress
    try:
        if args.via_dds:
            episodes = record_via_dds(
                args.out,
                seeds,
                storage=args.storage,
                scene=scene,
                camera_hz=args.camera_hz,
                settle_time=args.settle_time,
                verbose=not args.quiet,
            )
        else:
            options = RecordOptions(
                storage=args.storage,
                scene=scene,
                rates=RecordingRates(camera_hz=args.camera_hz),
                settle_time=args.settle_time,
                start_noise=args.start_noise,
                variation=DemoVariation(
                    recovery_fraction=args.recovery_fraction,
                    pause_fraction=args.pause_fraction,
                    recovery_tilt_deg=args.recovery_tilt_deg,
                ),
            )
            episodes = record_offline(
                args.out, seeds, options, workers=args.workers, verbose=not args.quiet
            )
    except KinovaPolicyError as err:
        print(f'record_demos: {err}', file=sys.stderr)
        return 1
    finally:
        signals.restore(previous)
    if signals.stop_requested():
        print(f'record_demos: stopped; {len(episodes)} episodes finished in {args.out}')
        return 0
    print(
        f'{len(episodes)} episodes in {args.out} ({time.perf_counter() - t0:.1f} s), expert '
        f'success rate {100 * success_rate(episodes):.0f}%'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
