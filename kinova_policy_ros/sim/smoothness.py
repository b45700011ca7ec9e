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
- ``jerk_rms``: the root mean square over joints and time of the measured jerk (rad/s³), from
  the measured velocities resampled at ``rate_hz`` and differentiated twice.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ['boundary_jump_p95', 'jerk_rms', 'speed_dips']

FloatArray = npt.NDArray[np.float64]


def boundary_jump_p95(jumps: Sequence[float]) -> float | None:
    """Return the 95th percentile of the velocity jumps (None without a replacement)."""
    return float(np.percentile(np.asarray(jumps, dtype=np.float64), 95)) if len(jumps) else None


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
    t = np.asarray(t_s, dtype=np.float64)
    speed = np.linalg.norm(np.asarray(dq, dtype=np.float64).reshape(t.size, -1), axis=1)
    dist = np.asarray(distance, dtype=np.float64)
    if t.size < 3:
        return 0
    dips = np.zeros(t.size, dtype=bool)
    for i in range(t.size):
        left = speed[(t >= t[i] - window_s) & (t < t[i])]
        right = speed[(t > t[i]) & (t <= t[i] + window_s)]
        if left.size == 0 or right.size == 0 or dist[i] <= far_m:
            continue
        floor = max(min_speed, speed[i] / ratio)
        dips[i] = left.max() > floor and right.max() > floor
    starts = dips & ~np.concatenate([[False], dips[:-1]])
    return int(starts.sum())


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
