"""
The closed loop of the soak and load benchmarks: ``sim_node`` + ``policy_node`` over DDS.

:class:`ClosedLoop` starts both nodes as ``make demo``'s closed-loop stage does (a DDS domain of
its own), with a harness node (:class:`LoopHarness`) that runs episodes back to back
(:class:`EpisodeLoop`); :class:`Sampler` reads memory, latency, command rate and the node's
counters every sample period. Used by ``bench_soak.py`` and ``bench_load.py``.
"""

from __future__ import annotations

import argparse
from collections import deque
import itertools
import os
from pathlib import Path
import threading
import time
from typing import Any

from common import (
    percentile_ms,
    rss_mb,
)
from diagnostic_msgs.msg import DiagnosticArray
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


def report_key(state: str) -> str:
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
        self.counts.update({'plans_skipped': 0, **{report_key(s): 0 for s in FAULT_STATES}})
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
                        self.counts[report_key(state)] += 1
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
