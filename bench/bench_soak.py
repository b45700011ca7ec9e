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
from collections import deque
import itertools
import json
import os
from pathlib import Path
import sys
import tempfile
import threading
import time
from typing import Any

from common import (
    finite,
    growth_per_hour,
    machine,
    make_demo_checkpoint,
    percentile_ms,
    rss_mb,
    stop_on_signals,
    write_csv,
    write_json,
)
from diagnostic_msgs.msg import DiagnosticArray
from kinova_policy_ros.data.schema import atomic_write
from kinova_policy_ros.policy.handover import MIN_LEAD_NS
from kinova_policy_ros.ros.diagnostics import FAULT_STATES
from kinova_policy_ros.sim.ros.dds_eval import wait_until_ready
from kinova_policy_ros.sim.ros.eval_episode import (
    reset_policy,
    reset_simulator,
    set_enabled,
    wait_disabled,
)
from kinova_policy_ros.sim.ros.eval_recorder import EvalRecorder, POLICY_STATUS_NAME
from kinova_policy_ros.sim.ros.processes import (
    ChildProcess,
    policy_node_command,
    ProcessGroup,
    sim_command,
)
from kinova_policy_ros.sim.ros.sim_node import task_state_from_msg
from kinova_policy_ros.testing.dds import claim_domain_id, DomainClaim
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

STARTUP_TIMEOUT_S = 180.0
SERVICE_TIMEOUT_S = 20.0
# As make demo's closed-loop stage: some input age allowed, the full velocity limits.
POLICY_PARAMS: dict[str, object] = {'max_obs_age_s': 0.5, 'velocity_scale': 1.0}
COUNTERS = ('plans', 'commands_published', 'points_dropped_for_latency', 'control_overruns')


def _report_key(state: str) -> str:
    return state.replace(' ', '_') + '_reports'


def _ns(duration: Any) -> int:
    return int(duration.sec) * 1_000_000_000 + int(duration.nanosec)


class LoopHarness(EvalRecorder):
    """
    The evaluation harness node, counting instead of recording (bounded memory for hours).

    Commands and predicted trajectories are paired in order (the node publishes the predicted
    trajectory, stamped with the observation tick, right after each command).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counts = {'commands': 0, 'predicted': 0, 'late': 0, 'would_be_late': 0}
        self.counts.update({'plans_skipped': 0, **{_report_key(s): 0 for s in FAULT_STATES}})
        self.enabled_s = 0.0
        self._enabled_since: float | None = None
        self.episodes = 0
        self._ages_ns: list[int] = []
        self._cmd: deque[int] = deque(maxlen=64)
        self._pred: deque[tuple[int, int]] = deque(maxlen=64)
        self._last_cmd_ns: int | None = None
        self._points = 0
        self._dt_ns = 0
        self._last_state = ''

    def _on_joints(self, msg: JointState) -> None:
        with self._lock:
            self.joint_states_seen += 1

    def _on_task(self, msg: String) -> None:
        state = task_state_from_msg(msg)
        if state is None:
            return
        with self._lock:
            self.last_task = state

    def _on_command(self, msg: JointTrajectory) -> None:
        stamp = self.now_ns()
        first_ns = _ns(msg.points[0].time_from_start) if msg.points else 0
        with self._lock:
            self.counts['commands'] += 1
            self.counts['late'] += first_ns < MIN_LEAD_NS
            self._points = max(self._points, len(msg.points))
            period_ns = self._points * self._dt_ns
            if self._last_cmd_ns is not None and period_ns > 0:
                gap = stamp - self._last_cmd_ns
                if gap > 1.5 * period_ns:
                    self.counts['plans_skipped'] += round(gap / period_ns) - 1
            self._last_cmd_ns = stamp
            self._cmd.append(stamp)
            self._pair()

    def _on_predicted(self, msg: JointTrajectory) -> None:
        tick_ns = _ns(msg.header.stamp)
        dt_ns = _ns(msg.points[0].time_from_start) if msg.points else 0
        with self._lock:
            self.counts['predicted'] += 1
            self._dt_ns = dt_ns or self._dt_ns
            self._pred.append((tick_ns, dt_ns))
            self._pair()

    def _pair(self) -> None:
        while self._cmd and self._pred:
            received = self._cmd.popleft()
            tick_ns, dt_ns = self._pred.popleft()
            age = received - tick_ns
            self._ages_ns.append(age)
            self.counts['would_be_late'] += age > dt_ns - MIN_LEAD_NS

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        stamp = self.now_ns()
        for status in msg.status:
            if status.name == POLICY_STATUS_NAME:
                values = {kv.key: kv.value for kv in status.values}
                state = values.get('state', '')
                with self._lock:
                    self.last_diag = (stamp, values)
                    if state in FAULT_STATES and state != self._last_state:
                        self.counts[_report_key(state)] += 1
                    self._last_state = state

    def clear(self) -> None:
        """Start a new episode: no pairing or gap across the reset."""
        with self._lock:
            self._cmd.clear()
            self._pred.clear()
            self._last_cmd_ns = None

    def take_window(self) -> tuple[dict[str, int], float, list[int]]:
        """Return the counts, the enabled seconds so far and the latencies since the last call."""
        with self._lock:
            ages, self._ages_ns = self._ages_ns, []
            since = self._enabled_since
            running = time.monotonic() - since if since is not None else 0.0
            return dict(self.counts), self.enabled_s + running, ages

    def set_enabled_since(self, since: float | None) -> None:
        """Mark commands enabled since monotonic time ``since``; None: disabled (an episode)."""
        with self._lock:
            if since is None and self._enabled_since is not None:
                self.enabled_s += time.monotonic() - self._enabled_since
                self.episodes += 1
            self._enabled_since = since


class EpisodeLoop(threading.Thread):
    """Runs episodes back to back (seed ``seed0``, ``seed0 + 1``, ...) until ``stop`` is set."""

    def __init__(
        self,
        harness: LoopHarness,
        processes: ProcessGroup,
        episode_s: float,
        stop: threading.Event,
        seed0: int = 0,
    ) -> None:
        super().__init__(name='soak_episodes', daemon=True)
        self.harness, self.processes = harness, processes
        self.episode_s, self.stop, self.seed0 = episode_s, stop, seed0
        self.error: BaseException | None = None

    def run(self) -> None:
        """Run episodes; an error (unless stopping) is kept in ``error``."""
        try:
            for seed in itertools.count(self.seed0):
                if self.stop.is_set():
                    return
                self._episode(seed)
        except Exception as err:  # reported by the sampling loop
            if not self.stop.is_set():
                self.error = err

    def _episode(self, seed: int) -> None:
        h, alive, timeout = self.harness, self.processes.check_alive, SERVICE_TIMEOUT_S
        reset_simulator(h, seed, alive, timeout)  # a new target
        time.sleep(2.0 / 15.0)  # two camera periods: the frames of the new episode
        reset_policy(h, alive, timeout)
        h.clear()
        set_enabled(h, True, alive, timeout)
        h.set_enabled_since(time.monotonic())
        self.stop.wait(self.episode_s)
        set_enabled(h, False, alive, timeout)
        h.set_enabled_since(None)
        if not self.stop.is_set():
            wait_disabled(h, h.now_ns(), alive, timeout)


class ClosedLoop:
    """
    ``sim_node`` + ``policy_node`` (child processes, logs in ``out_dir``), the harness, episodes.

    A context manager: entering claims a DDS domain id, starts both nodes, waits until they are
    up and starts the episodes; leaving stops everything (also after Ctrl-C or an error).
    """

    def __init__(
        self,
        checkpoint: Path,
        out_dir: Path,
        episode_s: float = 8.0,
        policy_params: dict[str, object] | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.episode_s = episode_s
        params = {**POLICY_PARAMS, **(policy_params or {}), 'enabled_on_start': False}
        self.processes = ProcessGroup(
            [
                ChildProcess('sim_node', sim_command(0, {}), out_dir / 'sim_node.log'),
                ChildProcess(
                    'policy_node',
                    policy_node_command(checkpoint.resolve(), params),
                    out_dir / 'policy_node.log',
                ),
            ]
        )
        self.stop = threading.Event()
        self.context = rclpy.Context()
        self.claim: DomainClaim | None = None
        self.executor: SingleThreadedExecutor | None = None
        self.spinner: threading.Thread | None = None
        self.harness: LoopHarness | None = None
        self.episodes: EpisodeLoop | None = None

    def pid(self, name: str) -> int:
        """Return the process id of node ``name`` (``sim_node`` or ``policy_node``)."""
        pid = self.processes.info()[name]['pid']
        assert pid is not None
        return pid

    def check(self) -> None:
        """Raise if a node exited or the episodes failed."""
        self.processes.check_alive()
        if self.episodes is not None and self.episodes.error is not None:
            raise self.episodes.error

    def __enter__(self) -> ClosedLoop:
        """Start the nodes and the episodes (everything is stopped again if that fails)."""
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        self.claim = claim_domain_id()
        os.environ['ROS_DOMAIN_ID'] = str(self.claim.domain_id)
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.processes.start()
        # Ctrl-C is this script's (stop_on_signals), not rclpy's: its handler would shut the
        # context down under the running executor and the loop would carry on.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        harness = self.harness = LoopHarness(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(harness)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()
        wait_until_ready(harness, self.processes, self.out_dir, STARTUP_TIMEOUT_S)
        self.episodes = EpisodeLoop(harness, self.processes, self.episode_s, self.stop)
        self.episodes.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the episodes, the harness node and both processes."""
        self.stop.set()
        try:
            if self.episodes is not None:
                self.episodes.join(timeout=SERVICE_TIMEOUT_S * 3)
            if self.executor is not None:
                self.executor.shutdown(timeout_sec=5.0)
            rclpy.try_shutdown(context=self.context)
            if self.spinner is not None:
                self.spinner.join(timeout=5.0)
        finally:
            self.processes.stop()
            if self.claim is not None:
                self.claim.release()


def _num(values: dict[str, str], key: str) -> float:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return float('nan')


class Sampler:
    """Takes one row of the time series per call (rates over the time since the last one)."""

    def __init__(self, loop: ClosedLoop) -> None:
        self.loop = loop
        self.start = time.monotonic()
        self.last_commands = 0
        self.last_enabled_s = 0.0
        self.ages_ns: list[int] = []

    def sample(self) -> dict[str, float]:
        """Return the figures of the window since the last call (counters: cumulative)."""
        harness = self.loop.harness
        assert harness is not None
        counts, enabled_s, ages = harness.take_window()
        self.ages_ns += ages
        diag = harness.last_diag_values() or {}
        d_enabled = enabled_s - self.last_enabled_s
        d_commands = counts['commands'] - self.last_commands
        self.last_commands, self.last_enabled_s = counts['commands'], enabled_s
        row = {
            't_s': time.monotonic() - self.start,
            'rss_policy_mb': rss_mb(self.loop.pid('policy_node')),
            'rss_sim_mb': rss_mb(self.loop.pid('sim_node')),
            'latency_p50_ms': percentile_ms(ages, 50),
            'latency_p99_ms': percentile_ms(ages, 99),
            'node_p50_ms': _num(diag, 'inference_latency_p50_ms'),
            'node_p99_ms': _num(diag, 'inference_latency_p99_ms'),
            # nan while the window saw under a second of enabled commands (a reset)
            'commands_per_s': d_commands / d_enabled if d_enabled >= 1.0 else float('nan'),
            'episodes': float(harness.episodes),
            'enabled_s': enabled_s,
        }
        row.update({k: float(v) for k, v in counts.items()})
        row.update({k: _num(diag, k) for k in COUNTERS})
        return row


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
    totals += [_report_key(s) for s in FAULT_STATES]
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


def add_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments bench_soak and bench_load share."""
    parser.add_argument(
        '--checkpoint',
        type=Path,
        default=None,
        help='policy checkpoint (default: random weights, the demo model size)',
    )
    parser.add_argument('--interval', type=float, default=5.0, help='sample period, s')
    parser.add_argument('--episode-s', type=float, default=8.0, help='enabled time per episode')


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
