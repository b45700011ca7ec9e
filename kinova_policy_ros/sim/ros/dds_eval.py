"""
Closed-loop evaluation of a checkpoint over DDS: ``sim_node`` + ``policy_node`` as processes.

The end-to-end check of ``make demo``: the simulator and the policy node run as two separate
processes exactly as they would next to a robot (``python -m ... --ros-args -p ...``, logs in
``out_dir``), they talk over DDS, and a helper node in this process drives the episodes and
records what happens. For every seed:

1. the simulator is reset to the seed (``seed`` parameter + ``/sim_node/reset_to_seed``),
2. the policy's observation buffer is reset (``/kinova_policy/reset``) and the commands are
   enabled (``/kinova_policy/enable``),
3. ``duration_s`` of wall time is recorded: ``/joint_states`` (mapped by name), every command
   on ``/joint_trajectory_controller/joint_trajectory``, ``/kinova_policy/predicted_trajectory``
   (counted), ``/sim_node/task_state`` (distance, target, end-effector position) and the policy
   node's ``/diagnostics``,
4. the commands are disabled again (and the node is seen ``disabled`` on ``/diagnostics``
   before the next reset, so no late command reaches the next episode).

Metrics per episode follow :mod:`kinova_policy_ros.sim.closed_loop`: the final and minimum
distance end effector -> target (the simulator's ``task_state``), success = final distance
within 3 cm / 5 cm, the time from enabling to the first distance within 3 cm, and the velocity
jump at each chunk boundary. The jump is defined as in ``closed_loop``: when a command replaces
the running trajectory, max over joints of |desired velocity of the running trajectory at that
instant - desired velocity of the new one (the measured velocity, where the controller
re-anchors)|. It is computed by replaying the received commands, at their receipt times, with
the measured ``/joint_states`` through the same ``TrajectoryFollower`` the simulator uses.
Inference latency (observation tick -> command published, p50/p99 over the node's last 500
plans) is what the node reports on ``/diagnostics``: per episode its report right after the
episode, in the summary its last report (with the default 8 s episodes, 500 plans cover about
25 episodes). ``policy_problem_reports`` counts the node's ``stale input`` / ``invalid input`` /
``error`` reports during an episode (each one means commands paused).

Everything goes to ``out_dir/closed_loop.json`` (``{'episodes': [...], 'summary': {...}}``,
traces included; ``summary['per_episode']`` has the scalars only) and, by default, the PNGs of
``sim.eval_plots``. This module is a ROS adapter (it imports rclpy).
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path
import subprocess
import sys
import threading
import time
from typing import Any, IO

from diagnostic_msgs.msg import DiagnosticArray
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import ConfigError, KinovaPolicyError
from kinova_policy_ros.data.schema import atomic_write
from kinova_policy_ros.ros.messages import now_ns
from kinova_policy_ros.ros.node_params import NODE_NAME as POLICY_NODE_NAME
from kinova_policy_ros.sim import eval_plots
from kinova_policy_ros.sim.mjcf import SceneConfig
from kinova_policy_ros.sim.ros.record_demos import (
    call_trigger,
    sim_node_command,
    stop_process,
    wait_for,
)
from kinova_policy_ros.sim.ros.sim_node import DEFAULT_TOPICS, msg_to_command
from kinova_policy_ros.sim.trajectory import (
    TrajectoryCommand,
    TrajectoryFollower,
    TrajectoryRejected,
)
import numpy as np
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

SIM_NODE_NAME = 'sim_node'
POLICY_STATUS_NAME = f'{POLICY_NODE_NAME}: policy'
SUCCESS_3CM = 0.03
SUCCESS_5CM = 0.05

STARTUP_TIMEOUT_S = 120.0
"""Time both processes get to come up (torch import and checkpoint load on a busy CPU)."""

SERVICE_TIMEOUT_S = 15.0
INPUT_PROBLEM_STATES = ('stale input', 'invalid input', 'error')
TRACE_KEYS = ('ee_path', 'task_t_s', 'distance_trace', 'measured', 'commands')
"""Per-episode entries that are traces (in ``closed_loop.json``, not in the summary)."""


# -- processes ---------------------------------------------------------------------------------


def ros_param_arg(name: str, value: object) -> str:
    """
    Return ``name:=value`` for ``--ros-args -p`` with a value that keeps its ROS type.

    Booleans become ``true``/``false``, floats always carry a decimal point (``20`` would be an
    integer parameter), strings are quoted, sequences become YAML lists.
    """
    return f'{name}:={_yaml_value(value)}'


def _yaml_value(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f'ROS parameter values must be finite, got {value!r}')
        text = repr(value)
        if 'e' in text and '.' not in text.split('e')[0]:
            mantissa, exponent = text.split('e')
            text = f'{mantissa}.0e{exponent}'
        return text
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, Sequence):
        return '[' + ', '.join(_yaml_value(v) for v in value) + ']'
    raise ConfigError(f'unsupported ROS parameter value {value!r} ({type(value).__name__})')


def policy_node_command(checkpoint: Path, params: Mapping[str, object]) -> list[str]:
    """Command line that starts ``policy_node`` on ``checkpoint`` with ``params``."""
    cmd = [
        sys.executable,
        '-m',
        'kinova_policy_ros.ros.policy_node',
        '--ros-args',
        '-p',
        ros_param_arg('checkpoint', str(checkpoint)),
    ]
    for name, value in params.items():
        cmd += ['-p', ros_param_arg(name, value)]
    return cmd


def sim_command(seed: int, params: Mapping[str, object]) -> list[str]:
    """Command line that starts ``sim_node`` at ``seed`` with the extra ``params``."""
    p = dict(params)
    default = SceneConfig()
    scene = SceneConfig(
        image_width=int(_number('image_width', p.pop('image_width', default.image_width))),
        image_height=int(_number('image_height', p.pop('image_height', default.image_height))),
    )
    camera_hz = _number('camera_rate_hz', p.pop('camera_rate_hz', 15.0))
    p.pop('seed', None)
    cmd = sim_node_command(seed, scene, camera_hz)
    for name, value in p.items():
        cmd += ['-p', ros_param_arg(name, value)]
    return cmd


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f'sim parameter {name!r}: expected a number, got {value!r}')
    return float(value)


def log_tail(path: Path, max_chars: int = 4000) -> str:
    """Return the last ``max_chars`` characters of a log file ('' when unreadable)."""
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_chars))
            return f.read().decode('utf-8', errors='replace')
    except OSError:
        return ''


@dataclass
class ChildProcess:
    """A node started as a child process, its stdout + stderr going to ``log``."""

    name: str
    cmd: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process (environment: this process's, unbuffered output)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, 'wb')
        env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'RCUTILS_LOGGING_BUFFERED_STREAM': '0'}
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env
        )

    def check_alive(self) -> None:
        """Raise :class:`KinovaPolicyError` with the tail of the log if the process exited."""
        if self.proc is None:
            raise KinovaPolicyError(f'{self.name} was not started')
        rc = self.proc.poll()
        if rc is not None:
            if self._log_file is not None:
                self._log_file.flush()
            raise KinovaPolicyError(
                f'{self.name} exited early with code {rc}; the end of its log {self.log}:\n'
                f'{log_tail(self.log)}'
            )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT, SIGKILL after ``timeout``; return the exit code (None if never started)."""
        try:
            if self.proc is not None:
                stop_process(self.proc, timeout)
                return self.proc.returncode
            return None
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None


# -- the helper node --------------------------------------------------------------------------


class EvalRecorder(Node):
    """
    Drives the episodes (service clients) and records the closed loop (subscriptions).

    Every callback appends ``(receipt ns, value)`` to a list under a lock; ``clear()`` starts a
    new episode's record. Times are this node's clock (system time, like the nodes' stamps).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('closed_loop_eval', **kwargs)
        self._lock = threading.Lock()
        self.joints: list[tuple[int, list[float], list[float]]] = []
        self.commands: list[tuple[int, JointTrajectory]] = []
        self.tasks: list[tuple[int, dict[str, Any]]] = []
        self.diagnostics: list[tuple[int, dict[str, str]]] = []
        self.predicted = 0
        self.last_diag: tuple[int, dict[str, str]] | None = None
        self.last_task: dict[str, Any] | None = None
        self.joint_states_seen = 0
        self._joint_index: tuple[tuple[str, ...], list[int]] | None = None
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(
            JointState, DEFAULT_TOPICS['joint_states'], self._on_joints, reliable
        )
        self.create_subscription(
            JointTrajectory, DEFAULT_TOPICS['command'], self._on_command, reliable
        )
        self.create_subscription(
            JointTrajectory,
            f'/{POLICY_NODE_NAME}/predicted_trajectory',
            self._on_predicted,
            reliable,
        )
        self.create_subscription(String, DEFAULT_TOPICS['task_state'], self._on_task, reliable)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, reliable)
        self.enable_client: Any = self.create_client(SetBool, f'/{POLICY_NODE_NAME}/enable')
        self.reset_client: Any = self.create_client(Trigger, f'/{POLICY_NODE_NAME}/reset')
        self.sim_params_client: Any = self.create_client(
            SetParameters, f'/{SIM_NODE_NAME}/set_parameters'
        )

    def now_ns(self) -> int:
        """Return this node's clock in integer nanoseconds."""
        return now_ns(self)

    def clear(self) -> None:
        """Forget the recorded traces (a new episode)."""
        with self._lock:
            self.joints, self.commands, self.tasks, self.diagnostics = [], [], [], []
            self.predicted = 0

    def _on_joints(self, msg: JointState) -> None:
        stamp = self.now_ns()
        names = tuple(msg.name)
        cached = self._joint_index
        if cached is None or cached[0] != names:
            lookup = {n: i for i, n in enumerate(names)}
            if any(n not in lookup for n in kin.JOINT_NAMES):
                return
            cached = (names, [lookup[n] for n in kin.JOINT_NAMES])
            self._joint_index = cached
        idx = cached[1]
        q = [float(msg.position[i]) for i in idx]
        dq = [float(msg.velocity[i]) for i in idx] if len(msg.velocity) == len(names) else []
        with self._lock:
            self.joints.append((stamp, q, dq))
            self.joint_states_seen += 1

    def _on_command(self, msg: JointTrajectory) -> None:
        with self._lock:
            self.commands.append((self.now_ns(), msg))

    def _on_predicted(self, msg: JointTrajectory) -> None:
        with self._lock:
            self.predicted += 1

    def _on_task(self, msg: String) -> None:
        try:
            state = dict(json.loads(msg.data))
        except (ValueError, TypeError):
            return
        with self._lock:
            self.tasks.append((self.now_ns(), state))
            self.last_task = state

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        stamp = self.now_ns()
        for status in msg.status:
            if status.name == POLICY_STATUS_NAME:
                values = {kv.key: kv.value for kv in status.values}
                with self._lock:
                    self.diagnostics.append((stamp, values))
                    self.last_diag = (stamp, values)

    def snapshot(self) -> dict[str, Any]:
        """Return copies of everything recorded since ``clear()``."""
        with self._lock:
            return {
                'joints': list(self.joints),
                'commands': list(self.commands),
                'tasks': list(self.tasks),
                'diagnostics': list(self.diagnostics),
                'predicted': self.predicted,
            }


def _call(
    client: Any, request: Any, what: str, alive: Callable[[], None], timeout: float
) -> Any:
    """Call a service, checking that the processes live while waiting."""
    deadline = time.monotonic() + timeout
    while not client.wait_for_service(timeout_sec=0.2):
        alive()
        if time.monotonic() > deadline:
            raise KinovaPolicyError(f'service {what} not available after {timeout:.0f} s')
    future = client.call_async(request)

    def done() -> bool:
        alive()
        return bool(future.done())

    wait_for(done, timeout, f'the answer of {what}')
    result = future.result()
    if result is None:
        raise KinovaPolicyError(f'service {what} gave no answer')
    return result


# -- metrics (pure) -----------------------------------------------------------------------------


def command_dict(t_s: float, msg: JointTrajectory) -> dict[str, Any]:
    """Return a received command as JSON-friendly lists (the message's own joint order)."""
    cmd = msg_to_command(msg)
    return {
        't_s': t_s,
        'joint_names': list(cmd.joint_names),
        'time_from_start': [float(t) for t in cmd.time_from_start],
        'positions': [[float(v) for v in p] for p in cmd.positions],
        'velocities': [[float(v) for v in p] for p in cmd.velocities or []],
        'stamp_ns': int(cmd.stamp_ns),
    }


def chunk_velocity_jumps(
    commands: Sequence[Mapping[str, Any]],
    measured: Mapping[str, Any],
    angle_wraparound: bool = False,
) -> tuple[list[float], int]:
    """
    Velocity jump (rad/s, max over joints) at every chunk boundary, and the rejected count.

    Replays ``commands`` (``command_dict`` entries, ``t_s`` = receipt time) through a
    ``TrajectoryFollower``, each anchored at the last measured state (``measured``: ``t_s``,
    ``positions``, ``velocities`` in ``kin.JOINT_NAMES`` order) received before it. For each
    command that replaces a running trajectory: max |desired velocity just before - just
    after|, the definition of ``closed_loop.run_policy_episode``.
    """
    follower = TrajectoryFollower(angle_wraparound=angle_wraparound)
    t_meas = np.asarray(measured.get('t_s', []), dtype=np.float64)
    q_meas = np.asarray(measured.get('positions', []), dtype=np.float64).reshape(-1, 7)
    dq_meas = np.asarray(measured.get('velocities', []), dtype=np.float64)
    if dq_meas.shape != q_meas.shape:
        dq_meas = np.zeros_like(q_meas)
    jumps: list[float] = []
    rejected = 0
    for c in commands:
        now = round(float(c['t_s']) * 1e9)
        i = int(np.searchsorted(t_meas, float(c['t_s']), side='right')) - 1
        if i < 0:
            if t_meas.size == 0:
                continue
            i = 0
        cmd = TrajectoryCommand(
            joint_names=list(c['joint_names']),
            time_from_start=list(c['time_from_start']),
            positions=list(c['positions']),
            velocities=list(c['velocities']) or None,
            stamp_ns=int(c.get('stamp_ns', 0)),
        )
        before = follower.sample(now)
        try:
            follower.set_trajectory(cmd, now, q_meas[i], dq_meas[i])
        except TrajectoryRejected:
            rejected += 1
            continue
        after = follower.sample(now)
        if before is not None and after is not None:
            jumps.append(float(np.max(np.abs(after[1] - before[1]))))
    return jumps, rejected


def _float_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def episode_result(
    seed: int,
    reset_info: Mapping[str, Any],
    record: Mapping[str, Any],
    t0_ns: int,
    end_ns: int,
    diag_after: Mapping[str, str] | None,
    diag_before: Mapping[str, str] | None,
    angle_wraparound: bool = False,
) -> dict[str, Any]:
    """
    Turn one episode's record (``EvalRecorder.snapshot()``) into the per-episode result.

    Only messages received in ``[t0_ns, end_ns]`` count; task states only of the simulator
    episode ``reset_info['episode']``. Times ``t_s`` are seconds since ``t0_ns`` (enable).
    ``diag_before`` / ``diag_after`` are the node's ``/diagnostics`` values before enabling and
    after it reported the disable; their counters give ``commands_published`` and
    ``points_dropped_for_latency`` (these run until the node saw the disable, so they may count
    one plan more than the recording window). Distances in metres, velocities in rad/s.
    Traces: ``ee_path`` (task state, 10 Hz), ``task_t_s`` + ``distance_trace``, ``measured``
    (``/joint_states`` in ``kin.JOINT_NAMES`` order, wrapped like the driver) and ``commands``
    (``command_dict`` entries, the message's joint order).
    """
    episode_index = int(reset_info.get('episode', -1))

    def rel(stamp: int) -> float:
        return (stamp - t0_ns) * 1e-9

    joints = [(s, q, dq) for s, q, dq in record['joints'] if t0_ns <= s <= end_ns]
    measured = {
        'joint_names': list(kin.JOINT_NAMES),
        't_s': [rel(s) for s, _, _ in joints],
        'positions': [q for _, q, _ in joints],
        'velocities': [dq for _, _, dq in joints] if all(dq for _, _, dq in joints) else [],
    }
    commands = [
        command_dict(rel(s), msg) for s, msg in record['commands'] if t0_ns <= s <= end_ns
    ]
    tasks = [
        (s, t)
        for s, t in record['tasks']
        if t0_ns <= s <= end_ns and int(t.get('episode', episode_index)) == episode_index
    ]
    if not tasks:
        raise KinovaPolicyError(
            f'seed {seed}: no {DEFAULT_TOPICS["task_state"]} message of simulator episode '
            f'{episode_index} received during the episode'
        )
    task_t = [rel(s) for s, _ in tasks]
    distance = np.array([float(t['distance']) for _, t in tasks])
    reached = np.nonzero(distance <= SUCCESS_3CM)[0]
    final = float(distance[-1])
    jumps, replay_rejected = chunk_velocity_jumps(commands, measured, angle_wraparound)
    last_task = tasks[-1][1]
    first_task = tasks[0][1]
    diag = dict(diag_after or {})

    def counter_delta(key: str) -> int | None:
        after = _float_or_none(diag.get(key))
        before = _float_or_none((diag_before or {}).get(key)) or 0.0
        return None if after is None else int(after - before)

    problems = [
        f'{v.get("state")}: {v.get("detail", "")}'
        for s, v in record.get('diagnostics', [])
        if t0_ns <= s <= end_ns and v.get('state') in INPUT_PROBLEM_STATES
    ]
    return {
        'seed': int(seed),
        'sim_episode': episode_index,
        'target': [float(v) for v in reset_info.get('target', last_task.get('target', []))],
        'final_distance': final,
        'min_distance': float(distance.min()),
        'success_3cm': final <= SUCCESS_3CM,
        'success_5cm': final <= SUCCESS_5CM,
        'time_to_success_s': float(task_t[reached[0]]) if reached.size else None,
        'duration_s': (end_ns - t0_ns) * 1e-9,
        'commands_received': len(commands),
        'commands_published': counter_delta('commands_published'),
        'commands_rejected_by_sim': int(last_task.get('trajectories_rejected', 0))
        - int(first_task.get('trajectories_rejected', 0)),
        'last_rejection': str(last_task.get('last_rejection', '')),
        'commands_rejected_in_replay': replay_rejected,
        'predicted_received': int(record.get('predicted', 0)),
        'chunk_velocity_jumps': jumps,
        'max_chunk_velocity_jump': max(jumps, default=0.0),
        'inference_latency_p50_ms': _float_or_none(diag.get('inference_latency_p50_ms')),
        'inference_latency_p99_ms': _float_or_none(diag.get('inference_latency_p99_ms')),
        'points_dropped_for_latency': counter_delta('points_dropped_for_latency'),
        'policy_problem_reports': len(problems),
        'first_policy_problem': problems[0] if problems else '',
        'ee_path': [[float(v) for v in t['ee']] for _, t in tasks if 'ee' in t],
        'task_t_s': task_t,
        'distance_trace': distance.tolist(),
        'measured': measured,
        'commands': commands,
    }


def compact(episode: Mapping[str, Any]) -> dict[str, Any]:
    """Return an episode result without its traces (for summaries)."""
    out = {k: v for k, v in episode.items() if k not in TRACE_KEYS}
    out.pop('chunk_velocity_jumps', None)
    return out


def summarize(
    episodes: Sequence[Mapping[str, Any]],
    wall_time_s: float,
    last_diag: Mapping[str, str] | None = None,
    startup_s: float | None = None,
) -> dict[str, Any]:
    """
    Aggregate the episodes: success rates, distances, chunk-boundary jumps, node latency.

    The latency is the node's own figure from its last ``/diagnostics`` (its last 500 plans).
    """
    n = len(episodes)
    final = np.array([float(e['final_distance']) for e in episodes], dtype=np.float64)
    jumps = np.array(
        [j for e in episodes for j in e.get('chunk_velocity_jumps', [])], dtype=np.float64
    )
    diag = dict(last_diag or {})

    def stat(fn: Callable[[np.ndarray], Any], a: np.ndarray) -> float | None:
        return float(fn(a)) if a.size else None

    return {
        'episodes': n,
        'seeds': [int(e['seed']) for e in episodes],
        'success_3cm': (
            float(np.mean([bool(e['success_3cm']) for e in episodes])) if n else None
        ),
        'success_5cm': (
            float(np.mean([bool(e['success_5cm']) for e in episodes])) if n else None
        ),
        'mean_final_distance': stat(np.mean, final),
        'median_final_distance': stat(np.median, final),
        'commands_received': int(sum(int(e['commands_received']) for e in episodes)),
        'policy_problem_reports': int(
            sum(int(e.get('policy_problem_reports', 0)) for e in episodes)
        ),
        'chunk_boundaries': int(jumps.size),
        'boundary_jump_median': stat(np.median, jumps),
        'boundary_jump_p95': stat(lambda a: np.percentile(a, 95), jumps),
        'boundary_jump_max': stat(np.max, jumps),
        'latency_p50_ms': _float_or_none(diag.get('inference_latency_p50_ms')),
        'latency_p99_ms': _float_or_none(diag.get('inference_latency_p99_ms')),
        'episode_duration_s': (
            float(np.mean([float(e['duration_s']) for e in episodes])) if n else None
        ),
        'startup_s': startup_s,
        'wall_time_s': float(wall_time_s),
        'per_episode': [compact(e) for e in episodes],
    }


def write_results(path: Path, results: Mapping[str, Any]) -> Path:
    """Write ``results`` as JSON, atomically."""
    text = json.dumps(results, indent=1, allow_nan=False)

    def write(tmp: Path) -> None:
        tmp.write_text(text)
        tmp.chmod(0o644)

    return atomic_write(path, write)


# -- the evaluation ----------------------------------------------------------------------------


def _progress_line(e: Mapping[str, Any], index: int, total: int) -> str:
    lat = e.get('inference_latency_p50_ms')
    return (
        f'closed loop over DDS [{index}/{total}] seed {e["seed"]}: final distance '
        f'{1000 * e["final_distance"]:.1f} mm (min {1000 * e["min_distance"]:.1f} mm), '
        f'{"success" if e["success_3cm"] else "no success"} within 3 cm, '
        f'{e["commands_received"]} commands, max chunk jump '
        f'{e["max_chunk_velocity_jump"]:.3f} rad/s'
        + (f', latency p50 {lat:.1f} ms' if lat is not None else '')
    )


def evaluate_over_dds(
    checkpoint: Path,
    seeds: Sequence[int],
    out_dir: Path,
    *,
    duration_s: float = 8.0,
    policy_params: Mapping[str, object] | None = None,
    sim_params: Mapping[str, object] | None = None,
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """
    Evaluate ``checkpoint`` in closed loop: ``sim_node`` and ``policy_node`` processes, DDS.

    :param checkpoint: the checkpoint directory for ``policy_node``.
    :param seeds: one episode per seed, in this order.
    :param out_dir: receives ``sim_node.log``, ``policy_node.log`` and ``closed_loop.json``
        (``{'episodes': [...], 'summary': {...}}`` with all traces).
    :param duration_s: wall time each episode runs with the commands enabled.
    :param policy_params: extra ``policy_node`` parameters (``enabled_on_start`` is always
        false: the harness enables the node per episode).
    :param sim_params: extra ``sim_node`` parameters (``image_width``, ``camera_rate_hz``, ...).
    :param progress: print one line per episode.
    :param plots: also write the PNGs of ``sim.eval_plots.write_all`` into ``out_dir``
        (``closed_loop_success.png``, ``closed_loop_ee_paths.png``,
        ``closed_loop_joints_seed<seed>.png`` of the first three episodes).
    :return: ``{'episodes': [per-episode dicts, traces included], 'summary': {...}}``.

    The DDS domain is whatever the environment says (``ROS_DOMAIN_ID`` ...): both processes
    inherit it. A process that exits early raises :class:`KinovaPolicyError` with the end of its
    log; both are stopped (SIGINT, then SIGKILL) whatever happens.
    """
    started = time.monotonic()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError('evaluate_over_dds: seeds must not be empty')
    if not duration_s > 0:
        raise ConfigError(f'evaluate_over_dds: duration_s must be > 0, got {duration_s!r}')
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise ConfigError(f'evaluate_over_dds: checkpoint {checkpoint} is not a directory')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pparams = {**dict(policy_params or {}), 'enabled_on_start': False}
    pparams.pop('checkpoint', None)
    sparams = dict(sim_params or {})
    wraparound = bool(sparams.get('angle_wraparound', False))
    camera_period = 1.0 / _number('camera_rate_hz', sparams.get('camera_rate_hz', 15.0))

    sim = ChildProcess('sim_node', sim_command(seeds[0], sparams), out_dir / 'sim_node.log')
    policy = ChildProcess(
        'policy_node',
        policy_node_command(checkpoint.resolve(), pparams),
        out_dir / 'policy_node.log',
    )

    def alive() -> None:
        sim.check_alive()
        policy.check_alive()

    context = rclpy.Context()
    executor: SingleThreadedExecutor | None = None
    spinner: threading.Thread | None = None
    episodes: list[dict[str, Any]] = []
    startup_s: float | None = None
    last_diag: dict[str, str] | None = None
    try:
        sim.start()
        policy.start()
        rclpy.init(context=context)
        recorder = EvalRecorder(context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(recorder)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        if progress:
            print(
                f'closed loop over DDS: starting sim_node and policy_node (logs in {out_dir})',
                flush=True,
            )

        def ready() -> bool:
            alive()
            diag = recorder.last_diag
            return (
                recorder.joint_states_seen > 0
                and recorder.last_task is not None
                and diag is not None
                and diag[1].get('state') == 'disabled'
            )

        wait_for(
            ready,
            STARTUP_TIMEOUT_S,
            f'sim_node and policy_node to come up (logs in {out_dir})',
        )
        startup_s = time.monotonic() - started

        for index, seed in enumerate(seeds):
            request = SetParameters.Request()
            seed_param = Parameter('seed', Parameter.Type.INTEGER, seed)
            request.parameters = [seed_param.to_parameter_msg()]
            answer = _call(
                recorder.sim_params_client,
                request,
                f'/{SIM_NODE_NAME}/set_parameters',
                alive,
                SERVICE_TIMEOUT_S,
            )
            if not answer.results or not answer.results[0].successful:
                reason = answer.results[0].reason if answer.results else ''
                raise KinovaPolicyError(f'/{SIM_NODE_NAME}: setting seed {seed} failed: {reason}')
            alive()
            reset_info = call_trigger(
                recorder, f'/{SIM_NODE_NAME}/reset_to_seed', SERVICE_TIMEOUT_S
            )
            if int(reset_info.get('seed', -1)) != seed:
                raise KinovaPolicyError(
                    f'/{SIM_NODE_NAME}/reset_to_seed reset to seed {reset_info.get("seed")}, '
                    f'not {seed}'
                )
            episode_index = int(reset_info['episode'])

            def new_episode(e: int = episode_index) -> bool:
                alive()
                task = recorder.last_task
                return task is not None and int(task.get('episode', -1)) == e

            wait_for(new_episode, SERVICE_TIMEOUT_S, f'the task state of seed {seed}')
            time.sleep(2.0 * camera_period)  # the camera frames of the new episode
            answer = _call(
                recorder.reset_client,
                Trigger.Request(),
                f'/{POLICY_NODE_NAME}/reset',
                alive,
                SERVICE_TIMEOUT_S,
            )
            if not answer.success:
                raise KinovaPolicyError(f'/{POLICY_NODE_NAME}/reset failed: {answer.message}')
            diag_before = recorder.last_diag[1] if recorder.last_diag else None
            recorder.clear()
            t0_ns = recorder.now_ns()
            _call(
                recorder.enable_client,
                SetBool.Request(data=True),
                f'/{POLICY_NODE_NAME}/enable',
                alive,
                SERVICE_TIMEOUT_S,
            )
            deadline = time.monotonic() + duration_s
            while time.monotonic() < deadline:
                alive()
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            end_ns = recorder.now_ns()
            _call(
                recorder.enable_client,
                SetBool.Request(data=False),
                f'/{POLICY_NODE_NAME}/enable',
                alive,
                SERVICE_TIMEOUT_S,
            )

            def disabled(after: int = end_ns) -> bool:
                alive()
                diag = recorder.last_diag
                return (
                    diag is not None
                    and diag[0] > after
                    and diag[1].get('enabled') == 'false'
                    and diag[1].get('state') != 'running'
                )

            wait_for(disabled, SERVICE_TIMEOUT_S, f'{POLICY_NODE_NAME} to report disabled')
            diag_after = recorder.last_diag[1] if recorder.last_diag else None
            result = episode_result(
                seed,
                reset_info,
                recorder.snapshot(),
                t0_ns,
                end_ns,
                diag_after,
                diag_before,
                wraparound,
            )
            episodes.append(result)
            if progress:
                print(_progress_line(result, index + 1, len(seeds)), flush=True)
        last_diag = recorder.last_diag[1] if recorder.last_diag else None
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        rclpy.try_shutdown(context=context)
        if spinner is not None:
            spinner.join(timeout=5.0)
        policy.stop()
        sim.stop()

    summary = summarize(episodes, time.monotonic() - started, last_diag, startup_s)
    summary['processes'] = {
        child.name: {
            'pid': child.proc.pid if child.proc else None,
            'returncode': child.proc.returncode if child.proc else None,
            'log': child.log.name,
        }
        for child in (sim, policy)
    }
    results = {'episodes': episodes, 'summary': summary}
    write_results(out_dir / 'closed_loop.json', results)
    if plots:
        summary['plots'] = [p.name for p in eval_plots.write_all(results, out_dir)]
        write_results(out_dir / 'closed_loop.json', results)
    if progress:
        print(
            f'closed loop over DDS: {len(episodes)} episodes, success within 3 cm '
            f'{summary["success_3cm"]:.0%} (5 cm {summary["success_5cm"]:.0%}), median '
            f'final distance {1000 * summary["median_final_distance"]:.1f} mm, wall time '
            f'{summary["wall_time_s"]:.1f} s',
            flush=True,
        )
    return results
