"""
Soak benchmark of the closed loop over DDS: ``sim_node`` + ``policy_node`` for N minutes.

The two nodes run as child processes exactly as in ``make demo``'s closed-loop stage
(:mod:`kinova_policy_ros.sim.ros.dds_eval`: ``python -m ... --ros-args -p ...``, DDS between
them, a domain id of this run's own); a harness node in this process runs episodes back to back
(``/sim_node/set_parameters`` seed + ``/sim_node/reset_to_seed``: a new target every episode,
``/kinova_policy/reset``, ``/kinova_policy/enable`` for ``--episode-s``, disable, wait for the
node's ``disabled`` report) and counts, without keeping them, every command, predicted
trajectory and ``/diagnostics`` report.

Every ``--interval`` seconds it samples:

- the resident memory (``VmRSS`` of ``/proc/<pid>/status``) of the policy node and the sim node;
- the latency observation tick -> command received, p50/p99 over the window (the tick is the
  stamp of ``~/predicted_trajectory``, published right after each command), and the node's own
  ``inference_latency_p50_ms`` / ``_p99_ms`` (tick -> published, last 500 plans);
- commands per enabled second (received on the command topic);
- plans skipped (a gap between two commands of an episode longer than 1.5 plan periods counts
  the plans missing from it), ``control_overruns`` (ticks merged into a running step),
  ``points_dropped_for_latency``, the stale / invalid / error reports on ``/diagnostics``,
  commands whose observation was older than one control period on arrival (``would_be_late``:
  their first predicted point was due before they arrived; the node drops such points,
  ``MIN_LEAD_NS``) and commands whose first point lies less than ``MIN_LEAD_NS`` after their
  publication (``late``: never expected).

Output into ``--out`` (atomically): ``soak.csv`` (the series, rewritten after every sample),
``soak.json`` (the summary: RSS growth per hour by a linear fit of the second half, window p99
first vs last, commands/s min/median, the totals, plus machine and command) and ``soak.png``. The
summary is also printed as one JSON object. Ctrl-C or the time limit ends the run cleanly.

Usage::

    python bench/bench_soak.py [--minutes 30] [--checkpoint DIR] [--out runs/bench_soak]
        [--interval 5] [--episode-s 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import tempfile
import threading
import time
from typing import Any

from closed_loop_harness import (
    add_loop_arguments,
    ClosedLoop,
    COUNTERS,
    report_key,
    Sampler,
)
from common import (
    finite,
    growth_per_hour,
    machine,
    make_demo_checkpoint,
    percentile_ms,
    stop_on_signals,
    write_csv,
    write_json,
)
from kinova_policy_ros.data.schema import atomic_write
from kinova_policy_ros.ros.diagnostics import FAULT_STATES
import numpy as np


def summarize(rows: list[dict[str, float]], ages_ns: list[int]) -> dict[str, Any]:
    """Return the summary of a series of samples (see the module docstring)."""

    def col(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=np.float64)

    t, last = col('t_s'), rows[-1]
    out: dict[str, Any] = {'duration_s': float(t[-1]), 'samples': len(rows)}
    out['episodes'] = int(last['episodes'])
    out['enabled_s'] = float(last['enabled_s'])
    for node in ('policy', 'sim'):
        rss = col(f'rss_{node}_mb')
        growth, resid = growth_per_hour(t, rss)
        out[f'rss_{node}'] = {
            'first_mb': float(rss[0]),
            'last_mb': float(rss[-1]),
            'max_mb': float(np.nanmax(rss)),
            'growth_mb_per_h_second_half': growth,
            'fit_residual_std_mb': resid,
        }
    p99 = col('latency_p99_ms')
    p99 = p99[np.isfinite(p99)]
    cps = col('commands_per_s')
    cps = cps[np.isfinite(cps)]
    tenth = max(1, p99.size // 10)
    out['latency_ms'] = {
        'what': 'observation tick -> command received, per sample window',
        'p50_run': percentile_ms(ages_ns, 50),
        'p99_run': percentile_ms(ages_ns, 99),
        'p99_first_window': float(p99[0]) if p99.size else float('nan'),
        'p99_last_window': float(p99[-1]) if p99.size else float('nan'),
        'p99_drift_first_to_last': float(p99[-1] - p99[0]) if p99.size else float('nan'),
        'p99_median_first_tenth': float(np.median(p99[:tenth])) if p99.size else float('nan'),
        'p99_median_last_tenth': float(np.median(p99[-tenth:])) if p99.size else float('nan'),
        'node_p50_last': float(last['node_p50_ms']),
        'node_p99_last': float(last['node_p99_ms']),
    }
    out['commands_per_s'] = {
        'min': float(cps.min()) if cps.size else float('nan'),
        'median': float(np.median(cps)) if cps.size else float('nan'),
    }
    totals = ['commands', 'plans_skipped', 'would_be_late', 'late', *COUNTERS]
    totals += [report_key(s) for s in FAULT_STATES]
    out['totals'] = {k: float(last[k]) for k in totals}
    out['dropped_plans_total'] = float(last['plans_skipped'])
    return out


def plot(path: Path, rows: list[dict[str, float]], title: str) -> None:
    """Write the series over time as a PNG (4 panels), atomically."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    t = np.array([r['t_s'] for r in rows]) / 60.0
    fig, axes = plt.subplots(4, 1, figsize=(7, 8), sharex=True)
    for key, name in (('rss_policy_mb', 'policy_node'), ('rss_sim_mb', 'sim_node')):
        rss = np.array([r[key] for r in rows])
        axes[0].plot(t, rss - rss[0], label=f'{name} (first {rss[0]:.0f} MiB)', lw=1)
    panels = [
        ((('latency_p50_ms', 'p50'), ('latency_p99_ms', 'p99')), 'tick -> command (ms)'),
        ((('commands_per_s', 'per enabled s'),), 'commands/s'),
        (
            (
                ('plans_skipped', 'plans skipped'),
                ('control_overruns', 'control overruns'),
                ('would_be_late', 'obs > dt old on arrival'),
                ('late', 'late commands'),
            ),
            'count (cumulative)',
        ),
    ]
    for ax, (series, label) in zip(axes[1:], panels):
        for key, name in series:
            ax.plot(t, [r[key] for r in rows], label=name, lw=1)
        ax.set_ylabel(label)
    axes[0].set_ylabel('RSS growth (MiB)')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc='best', fontsize=7)
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlabel('minutes')
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=70, format='png'))
    plt.close(fig)


def run_soak(args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    """Run the loop for ``args.minutes``, sampling; write the outputs; return the summary."""
    out: Path = args.out
    stop = threading.Event()
    stop_on_signals(stop)
    rows: list[dict[str, float]] = []
    sampler: Sampler | None = None
    error = None
    try:
        with ClosedLoop(checkpoint, out / 'logs', args.episode_s) as loop:
            sampler = Sampler(loop)
            deadline = time.monotonic() + args.minutes * 60.0
            while not stop.is_set() and time.monotonic() < deadline:
                if stop.wait(min(args.interval, max(0.0, deadline - time.monotonic()))):
                    break  # Ctrl-C: the nodes may have got it too, no liveness check
                loop.check()
                rows.append(sampler.sample())
                write_csv(out / 'soak.csv', rows)
                print(_progress(rows[-1]), flush=True)
    except Exception as err:  # the outputs of the samples so far are still written
        error = f'{type(err).__name__}: {err}'
    result: dict[str, Any] = {'benchmark': 'soak', 'machine': machine()}
    result['command'] = ' '.join(['python', *sys.argv])
    result['checkpoint'] = args.checkpoint_name
    result['stopped_early'] = stop.is_set()
    if error:
        result['error'] = error
    if rows and sampler is not None:
        result['summary'] = summarize(rows, sampler.ages_ns)
        write_json(out / 'soak.json', result)
        plot(out / 'soak.png', rows, f'closed loop over DDS, {rows[-1]["t_s"] / 60:.0f} min')
    return result


def _progress(row: dict[str, float]) -> str:
    return (
        f'{row["t_s"]:7.0f} s  rss policy {row["rss_policy_mb"]:.1f} sim {row["rss_sim_mb"]:.1f}'
        f' MiB  p50/p99 {row["latency_p50_ms"]:.1f}/{row["latency_p99_ms"]:.1f} ms  '
        f'{row["commands_per_s"]:.2f} cmd/s  skipped {row["plans_skipped"]:.0f}  '
        f'overruns {row["control_overruns"]:.0f}  episodes {row["episodes"]:.0f}'
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=30.0)
    parser.add_argument('--out', type=Path, default=Path('runs/bench_soak'))
    add_loop_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='bench_soak_') as tmp:
        checkpoint = args.checkpoint or make_demo_checkpoint(Path(tmp) / 'ckpt')
        args.checkpoint_name = str(args.checkpoint or 'random weights, demo model size')
        result = run_soak(args, checkpoint)
    print(json.dumps(finite(result), indent=2))
    return 1 if 'error' in result else 0


if __name__ == '__main__':
    sys.exit(main())
