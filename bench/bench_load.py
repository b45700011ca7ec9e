"""
The closed loop over DDS alone and beside a CPU-saturating training run, in one invocation.

``sim_node`` + ``policy_node`` run episodes back to back exactly as in ``bench_soak.py`` (the
same harness, the same checkpoint choice) for ``--minutes``, then, with the same two processes
still running, a real training run of the package starts
(``python -m kinova_policy_ros.training.train`` on synthetic episodes of
``kinova_policy_ros.testing.synthetic``, the default model at 96x128, batch 64, torch with one
thread per core: every core busy) and, after ``--warmup-s``, the loop is measured again for
``--minutes``. For each phase: plans, commands, plans skipped, control overruns (ticks merged
into a running step), stale / invalid / error reports, latency observation tick -> command
received (p50/p99) and the node's own p50/p99, deadline misses (commands whose observation was
older than one control period on arrival: without the node's latency compensation their first
point would have been late; ``points_dropped_for_latency`` counts the points it dropped) and
late commands (first point less than ``MIN_LEAD_NS`` after publication: never expected), plus
the CPU the trainer used. The ratio loaded / alone of each figure shows how the node degrades
under load: by skipping plans and dropping points that are already due, never by commanding late.

Output: one JSON object on stdout (machine, command, both phases, the ratios), also written to
``--out``/load.json, and a Markdown table.

Usage::

    python bench/bench_load.py [--minutes 3] [--warmup-s 30] [--checkpoint DIR]
        [--out runs/bench_load]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, IO

from closed_loop_harness import add_loop_arguments, ClosedLoop, Sampler
from common import (
    cpu_seconds,
    finite,
    machine,
    make_demo_checkpoint,
    percentile_ms,
    stop_on_signals,
    write_json,
)
from kinova_policy_ros.sim.ros.processes import stop_process
from kinova_policy_ros.testing.synthetic import write_episodes

DELTAS = (
    'plans',
    'commands',
    'plans_skipped',
    'control_overruns',
    'would_be_late',
    'points_dropped_for_latency',
    'late',
    'stale_input_reports',
    'invalid_input_reports',
    'error_reports',
)


class Training:
    """A training run of the package on synthetic episodes, as a CPU load (all cores)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Write the episodes and start the trainer (its log: ``train.log`` in ``tmp``)."""
        write_episodes(self.tmp / 'episodes', 6, num_frames=120, hw=(96, 128))
        cores = str(os.cpu_count() or 1)
        env = {**os.environ, 'OMP_NUM_THREADS': cores, 'MKL_NUM_THREADS': cores}
        cmd = [
            sys.executable,
            '-m',
            'kinova_policy_ros.training.train',
            '--data',
            str(self.tmp / 'episodes'),
            '--out',
            str(self.tmp / 'train'),
            '--cache-dir',
            str(self.tmp / 'cache'),
            '--no-progress',
            'train.device=cpu',
            'train.num_steps=1000000',
            'train.val_every=1000000',
            'train.checkpoint_every=1000000',
        ]
        self._log = open(self.tmp / 'train.log', 'wb')
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def check(self) -> None:
        """Raise if the trainer exited."""
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.tmp / 'train.log').read_text(errors='replace')[-2000:]
            raise RuntimeError(f'the training load exited ({self.proc.returncode}):\n{log}')

    def cpu_s(self) -> float:
        """CPU seconds the trainer used so far."""
        return cpu_seconds(self.proc.pid) if self.proc is not None else float('nan')

    def stop(self) -> None:
        """Stop the trainer (SIGINT, then SIGKILL)."""
        if self.proc is not None:
            stop_process(self.proc, timeout=10.0)
        if self._log is not None:
            self._log.close()


def measure_phase(
    loop: ClosedLoop,
    sampler: Sampler,
    minutes: float,
    interval: float,
    stop: threading.Event,
    check: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Sample the running loop for ``minutes``; return the phase's figures (counter deltas)."""
    first = sampler.sample()
    ages_start = len(sampler.ages_ns)
    start = time.monotonic()
    last = first
    while not stop.is_set() and time.monotonic() - start < minutes * 60.0:
        if stop.wait(interval):
            break
        loop.check()
        if check is not None:
            check()
        last = sampler.sample()
    ages = sampler.ages_ns[ages_start:]
    enabled = last['enabled_s'] - first['enabled_s']
    out = {k: last[k] - first[k] for k in DELTAS}
    out.update(
        {
            'duration_s': last['t_s'] - first['t_s'],
            'enabled_s': enabled,
            'commands_per_enabled_s': out['commands'] / enabled if enabled > 0 else float('nan'),
            'latency_p50_ms': percentile_ms(ages, 50),
            'latency_p99_ms': percentile_ms(ages, 99),
            'latency_max_ms': float(max(ages) * 1e-6) if ages else float('nan'),
            'node_p50_ms': last['node_p50_ms'],
            'node_p99_ms': last['node_p99_ms'],
            'load_average_1min': os.getloadavg()[0],
        }
    )
    return out


def ratios(alone: dict[str, float], loaded: dict[str, float]) -> dict[str, float | None]:
    """Return loaded / alone of each figure (None where alone is 0 or not a number)."""
    out: dict[str, float | None] = {}
    for key, base in alone.items():
        value = loaded.get(key, float('nan'))
        out[key] = value / base if base and base == base and value == value else None
    return out


def table(alone: dict[str, float], loaded: dict[str, float]) -> str:
    """Return the Markdown table of both phases and their ratio."""
    lines = ['| figure | alone | beside training | loaded / alone |', '|---|---|---|---|']
    for key, ratio in ratios(alone, loaded).items():
        text = f'{ratio:.2f}' if ratio is not None else '-'
        lines.append(f'| {key} | {alone[key]:.4g} | {loaded[key]:.4g} | {text} |')
    return '\n'.join(lines)


def run_load(args: argparse.Namespace, checkpoint: Path, tmp: Path) -> dict[str, Any]:
    """Measure the loop alone, then beside the trainer; return the result."""
    stop = threading.Event()
    stop_on_signals(stop)
    training = Training(tmp)
    result: dict[str, Any] = {'benchmark': 'load', 'machine': machine()}
    result['command'] = ' '.join(['python', *sys.argv])
    result['checkpoint'] = args.checkpoint_name
    alone: dict[str, float] = {}
    loaded: dict[str, float] = {}
    try:
        with ClosedLoop(checkpoint, args.out / 'logs', args.episode_s) as loop:
            sampler = Sampler(loop)
            stop.wait(args.interval)  # the first plans (warm-up) stay out of both phases
            alone = measure_phase(loop, sampler, args.minutes, args.interval, stop)
            print(json.dumps({'alone': finite(alone)}), flush=True)
            if stop.is_set():
                raise KeyboardInterrupt
            training.start()
            stop.wait(args.warmup_s)
            training.check()
            cpu0, t0 = training.cpu_s(), time.monotonic()
            loaded = measure_phase(
                loop, sampler, args.minutes, args.interval, stop, training.check
            )
            loaded['training_cores_used'] = (training.cpu_s() - cpu0) / (time.monotonic() - t0)
            alone['training_cores_used'] = 0.0
    except KeyboardInterrupt:  # Ctrl-C during the first phase: no comparison
        pass
    finally:
        training.stop()
    result.update({'alone': alone, 'loaded': loaded})
    if alone and loaded:
        result['loaded_over_alone'] = ratios(alone, loaded)
    result['stopped_early'] = stop.is_set()
    write_json(args.out / 'load.json', result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=3.0, help='length of each phase')
    parser.add_argument(
        '--warmup-s', type=float, default=30.0, help='time the trainer gets before phase 2'
    )
    parser.add_argument('--out', type=Path, default=Path('runs/bench_load'))
    add_loop_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='bench_load_') as tmp:
        checkpoint = args.checkpoint or make_demo_checkpoint(Path(tmp) / 'ckpt')
        args.checkpoint_name = str(args.checkpoint or 'random weights, demo model size')
        result = run_load(args, checkpoint, Path(tmp))
    print(json.dumps(finite(result), indent=2))
    if result['loaded']:
        print()
        print(table(result['alone'], result['loaded']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
