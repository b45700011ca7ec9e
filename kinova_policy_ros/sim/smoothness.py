"""
How smoothly the arm moved: speed dips between plans, jerk, velocity jumps (pure numpy).

The closed-loop evaluations (in process, :mod:`~kinova_policy_ros.sim.closed_loop`; over DDS,
:mod:`~kinova_policy_ros.sim.eval_metrics`) report these next to success:

- ``boundary_jump_p95``: the 95th percentile of the velocity jumps at the plan replacements
  (rad/s, max over joints of |commanded velocity just after - just before|);
- ``speed_dips``: how often the measured joint-space speed ``|dq|`` falls below ``ratio`` (half)
  of the highest speed on BOTH sides within ``window_s`` — a slow-down the arm recovers from,
  the stop-and-go of plans that end at rest — while the tool centre point is farther than
  ``far_m`` (5 cm) from the target; starts, the final approach and standing still are not dips;
- ``handover_dips``: the speed dips the plans did not ask for — at the dip's slowest moment the
  plan being executed commanded at least ``ratio`` of the neighbourhood's speed (the arm lagged
  its command), or the arm was past that plan's predicted points, on the final ramp to rest
  that a late next plan leaves it on. The other dips are in the predictions themselves (a
  policy that learned slow-downs from its demonstrations); stop-and-go between plans is here;
- ``jerk_rms``: the root mean square over joints and time of the measured jerk (rad/s³), from
  the measured velocities resampled at ``rate_hz`` and differentiated twice.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    'boundary_jump_p95',
    'commanded_velocity',
    'handover_dips',
    'jerk_rms',
    'prediction_end_s',
    'speed_dips',
]

FloatArray = npt.NDArray[np.float64]


def boundary_jump_p95(jumps: Sequence[float]) -> float | None:
    """Return the 95th percentile of the velocity jumps (None without a replacement)."""
    return float(np.percentile(np.asarray(jumps, dtype=np.float64), 95)) if len(jumps) else None


def _dip_minima(
    t_s: npt.ArrayLike,
    dq: npt.ArrayLike,
    distance: npt.ArrayLike,
    window_s: float,
    ratio: float,
    far_m: float,
    min_speed: float,
) -> list[tuple[int, float]]:
    """Return ``(index of the slowest sample, neighbourhood speed)`` of each speed dip."""
    t = np.asarray(t_s, dtype=np.float64)
    speed = np.linalg.norm(np.asarray(dq, dtype=np.float64).reshape(t.size, -1), axis=1)
    dist = np.asarray(distance, dtype=np.float64)
    if t.size < 3:
        return []
    dips = np.zeros(t.size, dtype=bool)
    around = np.zeros(t.size)  # the slower side's highest speed
    for i in range(t.size):
        left = speed[(t >= t[i] - window_s) & (t < t[i])]
        right = speed[(t > t[i]) & (t <= t[i] + window_s)]
        if left.size == 0 or right.size == 0 or dist[i] <= far_m:
            continue
        floor = max(min_speed, speed[i] / ratio)
        around[i] = min(left.max(), right.max())
        dips[i] = around[i] > floor
    minima = []
    i = 0
    while i < t.size:
        if not dips[i]:
            i += 1
            continue
        j = i
        while j + 1 < t.size and dips[j + 1]:
            j += 1
        k = i + int(np.argmin(speed[i:j + 1]))
        minima.append((k, float(around[k])))
        i = j + 1
    return minima


def speed_dips(
    t_s: npt.ArrayLike,
    dq: npt.ArrayLike,
    distance: npt.ArrayLike,
    window_s: float = 0.5,
    ratio: float = 0.5,
    far_m: float = 0.05,
    min_speed: float = 0.05,
) -> int:
    """
    Count the speed dips (see the module docstring) in a measured trace.

    ``t_s [N]`` increasing times, ``dq [N, J]`` measured joint velocities (rad/s), ``distance
    [N]`` TCP → target (m) at the same times. Neighbourhoods slower than ``min_speed`` (rad/s)
    do not count (an arm at rest has no dips). A dip is a run of consecutive samples.
    """
    return len(_dip_minima(t_s, dq, distance, window_s, ratio, far_m, min_speed))


def handover_dips(
    t_s: npt.ArrayLike,
    dq: npt.ArrayLike,
    distance: npt.ArrayLike,
    dq_cmd: npt.ArrayLike,
    in_prediction: npt.ArrayLike,
    window_s: float = 0.5,
    ratio: float = 0.5,
    far_m: float = 0.05,
    min_speed: float = 0.05,
) -> int:
    """
    Count the speed dips the plans did not ask for (see the module docstring).

    ``dq_cmd [N, J]`` is the velocity the executed plan commanded at each time and
    ``in_prediction [N]`` whether that time lies within the plan's predicted points
    (:func:`commanded_velocity` builds both from the published plans); the rest as
    :func:`speed_dips`.
    """
    t = np.asarray(t_s, dtype=np.float64)
    cmd = np.linalg.norm(np.asarray(dq_cmd, dtype=np.float64).reshape(t.size, -1), axis=1)
    pred = np.asarray(in_prediction, dtype=bool).reshape(t.size)
    return sum(
        1
        for k, around in _dip_minima(t, dq, distance, window_s, ratio, far_m, min_speed)
        if not pred[k] or cmd[k] >= ratio * around
    )


def prediction_end_s(time_from_start: Sequence[float]) -> float:
    """
    Return when a published plan's prediction ends, in s from its start.

    That is its second-to-last point: the last is the rest the trajectory ends at (a one-point
    plan: that point).
    """
    return float(time_from_start[max(len(time_from_start) - 2, 0)])


def _interp_rows(rel: FloatArray, times: FloatArray, points: FloatArray) -> FloatArray:
    """Interpolate ``points [P, J]`` given at ``times [P]`` at ``rel [N]``: ``[N, J]``."""
    return np.stack([np.interp(rel, times, points[:, j]) for j in range(points.shape[1])], axis=-1)


def commanded_velocity(
    t_s: npt.ArrayLike,
    plans: Sequence[tuple[float, Sequence[float], Sequence[Sequence[float]]]],
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """
    Return the commanded velocity at each of ``t_s [N]``, and whether it is within a prediction.

    The velocity is the one the latest plan commands. ``plans`` are ``(start_s,
    time_from_start [P], velocities [P][J])`` in start order, as published (the prediction ends
    at :func:`prediction_end_s`). As a ``joint_trajectory_controller`` does, a plan runs from
    the commanded state at its start (the previous plan's velocity then; zero for the first) to
    its first point. Before the first plan: zero velocity, not in a prediction.
    """
    t = np.asarray(t_s, dtype=np.float64)
    starts = np.asarray([p[0] for p in plans], dtype=np.float64)
    joints = len(plans[0][2][0]) if plans and len(plans[0][2]) else 1
    dq = np.zeros((t.size, joints))
    pred = np.zeros(t.size, dtype=bool)
    active = np.searchsorted(starts, t, side='right') - 1  # [N] index of the executed plan
    v_start = np.zeros(joints)  # commanded velocity where the next plan takes over
    for p, (start, tfs, vel) in enumerate(plans):
        v = np.asarray(vel, dtype=np.float64).reshape(len(tfs), -1)
        if v.shape[1] != joints:
            continue
        times = np.concatenate([[0.0], np.asarray(tfs, dtype=np.float64)])  # [P+1]
        points = np.concatenate([v_start[None], v])  # [P+1,J]
        rows = np.flatnonzero(active == p)
        if rows.size:
            rel = t[rows] - start
            dq[rows] = _interp_rows(rel, times, points)
            pred[rows] = rel <= prediction_end_s(tfs)
        if p + 1 < len(plans):
            v_start = _interp_rows(np.asarray([plans[p + 1][0] - start]), times, points)[0]
    return dq, pred


def jerk_rms(t_s: npt.ArrayLike, dq: npt.ArrayLike, rate_hz: float = 50.0) -> float | None:
    """
    Return the RMS jerk (rad/s³) of measured velocities ``dq [N, J]`` at times ``t_s [N]``.

    The velocities are resampled on a uniform ``rate_hz`` grid (linear interpolation; receipt
    times jitter) and differentiated twice; None when the trace is shorter than 4 samples.
    """
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(dq, dtype=np.float64).reshape(t.size, -1)
    grid = np.arange(t[0], t[-1], 1.0 / rate_hz) if t.size else t
    if grid.size < 4:
        return None
    vg = np.stack([np.interp(grid, t, v[:, j]) for j in range(v.shape[1])], axis=1)  # [G, J]
    h = 1.0 / rate_hz
    jerk = np.diff(vg, n=2, axis=0) / (h * h)  # [G - 2, J]
    return float(np.sqrt(np.mean(jerk * jerk)))
