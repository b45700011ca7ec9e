"""
Metrics of a closed-loop evaluation from what a harness recorded (pure: no ROS, no simulator).

The harness (``sim.ros.eval_recorder``) keeps every message it receives with its receipt time;
:func:`episode_metrics` turns one episode's record into the per-episode result and
:func:`summarize` aggregates the episodes. Definitions follow :mod:`kinova_policy_ros.sim.
closed_loop`: success = final distance tool centre point (between the fingertips) -> target
within 3 cm / 5 cm (``success_3cm``; the same at the flange, ``end_effector_link``:
``success_3cm_flange``), and the
velocity jump at each chunk boundary = max over joints of |desired velocity of the running
trajectory - desired velocity of the replacing one| at the instant a command replaces it,
obtained by replaying the commands through the simulator's ``TrajectoryFollower``.
"""

from collections.abc import Callable, Mapping, Sequence
import math
from typing import Any

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.sim.eval_records import (
    CommandEntry,
    EpisodeRecord,
    EpisodeResult,
    JointSample,
    MeasuredTrace,
    Summary,
    TRACE_KEYS,
)
from kinova_policy_ros.sim.smoothness import (
    boundary_jump_p95,
    commanded_velocity,
    handover_dips,
    jerk_rms,
    speed_dips,
)
from kinova_policy_ros.sim.trajectory import (
    TrajectoryCommand,
    TrajectoryFollower,
    TrajectoryRejected,
)
import numpy as np
import numpy.typing as npt

SUCCESS_3CM = 0.03
SUCCESS_5CM = 0.05
TASK_STATE_TOPIC = '/sim_node/task_state'
INPUT_PROBLEM_STATES = ('stale input', 'invalid input', 'error')


def float_or_none(value: str | float | None) -> float | None:
    """Return ``value`` as a finite float, None when it is not a finite number."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def command_entry(t_s: float, cmd: TrajectoryCommand) -> CommandEntry:
    """Return a received command as JSON-friendly lists (the command's own joint order)."""
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

    Replays ``commands`` (``command_entry`` dictionaries, ``t_s`` = receipt time) through a
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


def measured_trace(joints: Sequence[JointSample], t0_ns: int) -> MeasuredTrace:
    """Return the joint samples as a trace, times in seconds since ``t0_ns``."""
    return {
        'joint_names': list(kin.JOINT_NAMES),
        't_s': [(s - t0_ns) * 1e-9 for s, _, _ in joints],
        'positions': [q for _, q, _ in joints],
        'velocities': [dq for _, _, dq in joints] if all(dq for _, _, dq in joints) else [],
    }


def counter_delta(
    key: str, after: Mapping[str, str] | None, before: Mapping[str, str] | None
) -> int | None:
    """Return how much the diagnostics counter ``key`` grew (None when ``after`` lacks it)."""
    a = float_or_none((after or {}).get(key))
    b = float_or_none((before or {}).get(key)) or 0.0
    return None if a is None else int(a - b)


def policy_problems(diagnostics: Sequence[tuple[int, Mapping[str, str]]]) -> list[str]:
    """Return ``'state: detail'`` of every diagnostics report of an input problem."""
    return [
        f'{v.get("state")}: {v.get("detail", "")}'
        for _, v in diagnostics
        if v.get('state') in INPUT_PROBLEM_STATES
    ]


def _task_metrics(
    tasks: Sequence[tuple[int, Mapping[str, Any]]], t0_ns: int
) -> dict[str, Any]:
    """Distance outcome and traces of the task states received during an episode."""
    task_t = [(s - t0_ns) * 1e-9 for s, _ in tasks]
    distance = np.array([float(t['distance']) for _, t in tasks], dtype=np.float64)
    reached: npt.NDArray[np.intp] = np.nonzero(distance <= SUCCESS_3CM)[0]
    final = float(distance[-1])
    first, last = tasks[0][1], tasks[-1][1]
    flange = float_or_none(last.get('distance_flange'))
    return {
        'final_distance': final,
        'final_distance_flange': flange,
        'success_3cm_flange': None if flange is None else flange <= SUCCESS_3CM,
        'success_5cm_flange': None if flange is None else flange <= SUCCESS_5CM,
        'min_distance': float(distance.min()),
        'success_3cm': final <= SUCCESS_3CM,
        'success_5cm': final <= SUCCESS_5CM,
        'time_to_success_s': float(task_t[reached[0]]) if reached.size else None,
        'commands_rejected_by_sim': int(last.get('trajectories_rejected', 0))
        - int(first.get('trajectories_rejected', 0)),
        'last_rejection': str(last.get('last_rejection', '')),
        'ee_path': [[float(v) for v in t['ee']] for _, t in tasks if 'ee' in t],
        'task_t_s': task_t,
        'distance_trace': distance.tolist(),
    }


def _smoothness(
    measured: MeasuredTrace,
    task_t_s: Sequence[float],
    distance: Sequence[float],
    commands: Sequence[CommandEntry],
) -> tuple[int | None, int | None, float | None]:
    """Return ``(speed_dips, handover_dips, jerk_rms)`` of the measured velocities."""
    t = np.asarray(measured['t_s'], dtype=np.float64)
    dq = np.asarray(measured['velocities'], dtype=np.float64)
    if dq.shape != (t.size, kin.NUM_JOINTS) or t.size < 4 or not len(task_t_s):
        return None, None, None
    dist = np.interp(t, np.asarray(task_t_s), np.asarray(distance))
    # plans start on receipt (stamp 0 or in the past, as the node publishes them)
    plans = [(c['t_s'], c['time_from_start'], c['velocities']) for c in commands]
    with_velocities = all(len(v) == len(tfs) and len(tfs) for _, tfs, v in plans)
    handover = None
    if with_velocities:
        dq_cmd, in_prediction = commanded_velocity(t, plans)
        handover = handover_dips(t, dq, dist, dq_cmd, in_prediction)
    return speed_dips(t, dq, dist), handover, jerk_rms(t, dq)


def episode_metrics(
    seed: int,
    reset_info: Mapping[str, Any],
    record: EpisodeRecord,
    t0_ns: int,
    end_ns: int,
    diag_after: Mapping[str, str] | None,
    diag_before: Mapping[str, str] | None,
    angle_wraparound: bool = False,
) -> EpisodeResult:
    """
    Turn one episode's record into the per-episode result.

    Only messages received in ``[t0_ns, end_ns]`` count; task states only of the simulator
    episode ``reset_info['episode']``. Times ``t_s`` are seconds since ``t0_ns`` (enable).
    ``diag_before`` / ``diag_after`` are the node's ``/diagnostics`` values before enabling and
    after it reported the disable; their counters give ``commands_published`` and
    ``points_dropped_for_latency`` (these run until the node saw the disable, so they may count
    one plan more than the recording window). Traces: ``ee_path`` (task state),
    ``task_t_s`` + ``distance_trace``, ``measured`` (joint states in ``kin.JOINT_NAMES`` order)
    and ``commands`` (``command_entry`` dictionaries, the command's joint order).

    :raises KinovaPolicyError: no task state of the episode was received in the window.
    """
    episode_index = int(reset_info.get('episode', -1))

    def inside(stamp: int) -> bool:
        return t0_ns <= stamp <= end_ns

    measured = measured_trace([j for j in record['joints'] if inside(j[0])], t0_ns)
    commands = [
        command_entry((s - t0_ns) * 1e-9, c) for s, c in record['commands'] if inside(s)
    ]
    tasks = [
        (s, t)
        for s, t in record['tasks']
        if inside(s) and int(t.get('episode', episode_index)) == episode_index
    ]
    if not tasks:
        raise KinovaPolicyError(
            f'seed {seed}: no {TASK_STATE_TOPIC} message of simulator episode '
            f'{episode_index} received during the episode'
        )
    task = _task_metrics(tasks, t0_ns)
    jumps, replay_rejected = chunk_velocity_jumps(commands, measured, angle_wraparound)
    smooth = _smoothness(measured, task['task_t_s'], task['distance_trace'], commands)
    diag = dict(diag_after or {})
    problems = policy_problems([d for d in record.get('diagnostics', []) if inside(d[0])])
    target = reset_info.get('target', tasks[-1][1].get('target', []))
    return {
        'seed': int(seed),
        'sim_episode': episode_index,
        'target': [float(v) for v in target],
        'final_distance': task['final_distance'],
        'min_distance': task['min_distance'],
        'success_3cm': task['success_3cm'],
        'success_5cm': task['success_5cm'],
        'final_distance_flange': task['final_distance_flange'],
        'success_3cm_flange': task['success_3cm_flange'],
        'success_5cm_flange': task['success_5cm_flange'],
        'time_to_success_s': task['time_to_success_s'],
        'duration_s': (end_ns - t0_ns) * 1e-9,
        'commands_received': len(commands),
        'commands_published': counter_delta('commands_published', diag, diag_before),
        'commands_rejected_by_sim': task['commands_rejected_by_sim'],
        'last_rejection': task['last_rejection'],
        'commands_rejected_in_replay': replay_rejected,
        'predicted_received': int(record.get('predicted', 0)),
        'chunk_velocity_jumps': jumps,
        'max_chunk_velocity_jump': max(jumps, default=0.0),
        'boundary_jump_p95': boundary_jump_p95(jumps),
        'speed_dips': smooth[0],
        'handover_dips': smooth[1],
        'jerk_rms': smooth[2],
        'inference_latency_p50_ms': float_or_none(diag.get('inference_latency_p50_ms')),
        'inference_latency_p99_ms': float_or_none(diag.get('inference_latency_p99_ms')),
        'points_dropped_for_latency': counter_delta(
            'points_dropped_for_latency', diag, diag_before
        ),
        'policy_problem_reports': len(problems),
        'first_policy_problem': problems[0] if problems else '',
        'ee_path': task['ee_path'],
        'task_t_s': task['task_t_s'],
        'distance_trace': task['distance_trace'],
        'measured': measured,
        'commands': commands,
    }


def compact(episode: Mapping[str, Any]) -> dict[str, Any]:
    """Return an episode result without its traces (for summaries)."""
    out = {k: v for k, v in episode.items() if k not in TRACE_KEYS}
    out.pop('chunk_velocity_jumps', None)
    return out


def _stat(
    fn: Callable[[npt.NDArray[np.float64]], Any], a: npt.NDArray[np.float64]
) -> float | None:
    return float(fn(a)) if a.size else None


def _rate(episodes: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """Share of the episodes where ``key`` is true; None when no episode has a value."""
    values = [bool(e[key]) for e in episodes if e.get(key) is not None]
    return float(np.mean(values)) if values else None


def _values(episodes: Sequence[Mapping[str, Any]], key: str) -> npt.NDArray[np.float64]:
    """Return the values of ``key`` that are not None."""
    return np.array([e[key] for e in episodes if e.get(key) is not None], dtype=np.float64)


def _total(episodes: Sequence[Mapping[str, Any]], key: str) -> int | None:
    """Return the sum of ``key`` over the episodes that have it (None when none has)."""
    values = _values(episodes, key)
    return int(values.sum()) if values.size else None


def summarize(
    episodes: Sequence[Mapping[str, Any]],
    wall_time_s: float,
    last_diag: Mapping[str, str] | None = None,
    startup_s: float | None = None,
) -> Summary:
    """
    Aggregate the episodes: success rates, distances, chunk-boundary jumps, node latency.

    The latency is the node's own figure from its last ``/diagnostics`` (its last 500 plans).
    """
    final = np.array([float(e['final_distance']) for e in episodes], dtype=np.float64)
    jumps = np.array(
        [j for e in episodes for j in e.get('chunk_velocity_jumps', [])], dtype=np.float64
    )
    durations = np.array([float(e['duration_s']) for e in episodes], dtype=np.float64)
    flange = np.array(
        [d for e in episodes if (d := e.get('final_distance_flange')) is not None],
        dtype=np.float64,
    )
    diag = dict(last_diag or {})
    return {
        'episodes': len(episodes),
        'seeds': [int(e['seed']) for e in episodes],
        'success_3cm': _rate(episodes, 'success_3cm'),
        'success_5cm': _rate(episodes, 'success_5cm'),
        'mean_final_distance': _stat(np.mean, final),
        'median_final_distance': _stat(np.median, final),
        'success_3cm_flange': _rate(episodes, 'success_3cm_flange'),
        'success_5cm_flange': _rate(episodes, 'success_5cm_flange'),
        'median_final_distance_flange': _stat(np.median, flange),
        'commands_received': int(sum(int(e['commands_received']) for e in episodes)),
        'policy_problem_reports': int(
            sum(int(e.get('policy_problem_reports', 0)) for e in episodes)
        ),
        'chunk_boundaries': int(jumps.size),
        'boundary_jump_median': _stat(np.median, jumps),
        'boundary_jump_p95': _stat(lambda a: np.percentile(a, 95), jumps),
        'boundary_jump_max': _stat(np.max, jumps),
        'speed_dips': _total(episodes, 'speed_dips'),
        'handover_dips': _total(episodes, 'handover_dips'),
        'jerk_rms_median': _stat(np.median, _values(episodes, 'jerk_rms')),
        'time_to_target_median_s': _stat(np.median, _values(episodes, 'time_to_success_s')),
        'latency_p50_ms': float_or_none(diag.get('inference_latency_p50_ms')),
        'latency_p99_ms': float_or_none(diag.get('inference_latency_p99_ms')),
        'episode_duration_s': _stat(np.mean, durations),
        'startup_s': startup_s,
        'wall_time_s': float(wall_time_s),
        'per_episode': [compact(e) for e in episodes],
    }


def progress_line(e: Mapping[str, Any], index: int, total: int) -> str:
    """Return the one-line report of episode ``index`` (1-based) of ``total``."""
    lat = e.get('inference_latency_p50_ms')
    return (
        f'closed loop over DDS [{index}/{total}] seed {e["seed"]}: final distance '
        f'{1000 * e["final_distance"]:.1f} mm (min {1000 * e["min_distance"]:.1f} mm), '
        f'{"success" if e["success_3cm"] else "no success"} within 3 cm, '
        f'{e["commands_received"]} commands, max chunk jump '
        f'{e["max_chunk_velocity_jump"]:.3f} rad/s, speed dips {e.get("speed_dips")} '
        f'({e.get("handover_dips")} not in the plans)'
        + (f', latency p50 {lat:.1f} ms' if lat is not None else '')
    )


def summary_line(summary: Summary) -> str:
    """Return the one-line report of a whole evaluation (success at the TCP, then the flange)."""
    flange = summary.get('success_3cm_flange')
    at_flange = '' if flange is None else f', at the flange {flange:.0%} within 3 cm'
    return (
        f'closed loop over DDS: {summary["episodes"]} episodes, success within 3 cm '
        f'{summary["success_3cm"] or 0.0:.0%} (5 cm {summary["success_5cm"] or 0.0:.0%})'
        f'{at_flange}, '
        f'median final distance {1000 * (summary["median_final_distance"] or 0.0):.1f} mm, '
        f'wall time {summary["wall_time_s"]:.1f} s'
    )


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """
    Wilson score interval of a success rate ``successes / n`` (95 % with ``z = 1.96``).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n
    successes. ValueError unless ``0 <= successes <= n`` and ``n >= 1``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f'wilson_interval: need 0 <= successes <= n, n >= 1; got {successes}/{n}')
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    # exactly 0 (1) at no failures (successes): centre - half is 0 only up to rounding
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi
