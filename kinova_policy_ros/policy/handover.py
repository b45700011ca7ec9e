"""
The hand-over between consecutive plans: which points a command carries and how it joins the last.

Pure numpy (no ROS, no torch). :class:`Planner` turns each prediction ``[T, J]`` (rad, the policy's
joint order) into the points of one ``trajectory_msgs/JointTrajectory`` command and remembers what
it published, so that the next plan can take over from it without a stop. The modes
(:data:`HANDOVER_MODES`, docs/controller.md compares them in the simulator):

- ``rest``: the ``action_horizon`` executed points only, the last at rest. The next plan replaces
  the command as it comes to a stop: stop-and-go at every plan (the behaviour before 0.3).
- ``lookahead``: the executed points plus ``lookahead_steps`` more of the prediction (the last
  still at rest), so the next plan, ``action_horizon`` ticks later, replaces a command that is
  still moving. Velocities at the points come from the prediction.
- ``splice``: ``lookahead``, and the first ``splice_steps`` points of the new plan are
  blended from the previous command (sampled at the same instants as the controller would
  execute it) into the new prediction, so the path bends over a few points instead of at once.
- ``ensemble``: ``lookahead``, and every point is the weighted mean of all earlier predictions
  that cover its instant and the new one (ACT's temporal ensembling, weights ``exp(-m·i)`` with
  ``i = 0`` the oldest prediction, ``m = ensemble_decay``).
- ``spline`` (default): ``lookahead``, and the points are a least-squares polynomial in time of
  degree ``spline_degree`` through the predicted ones that starts exactly at the position and
  velocity the running command has when the new one takes effect (at rest at the measured
  position when none runs): continuous in position and velocity at the replacement, and free of
  the point-to-point jitter of a prediction.

Every mode ends in :func:`~kinova_policy_ros.policy.safety.bound_trajectory` with the velocity
the previous command has when the new one starts (``v_start``, so the acceleration bound holds
across the hand-over) — blending never bypasses the bounds.

Time: ``start_ns`` is when the command takes effect (the node publishes with header stamp 0, so
the controller starts it on arrival); predicted point ``i`` is due ``(i + 1)·dt`` after the
observation, ``elapsed_ns`` (inference) before ``start_ns``.
"""

from collections import deque
from dataclasses import dataclass

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import UnsafeCommandError
from kinova_policy_ros.policy.safety import (
    bound_trajectory,
    CommandLimits,
    prev_start,
    retime_window,
    unwrap_continuous,
)
import numpy as np
import numpy.typing as npt

__all__ = [
    'HANDOVER_MODES',
    'MIN_LEAD_NS',
    'HandoverConfig',
    'Plan',
    'Planner',
    'PublishedPlan',
    'fit_anchored_polynomial',
    'hermite',
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HANDOVER_MODES = ('rest', 'lookahead', 'splice', 'ensemble', 'spline')

MIN_LEAD_NS = 10_000_000
"""
A point must lie at least this far in the future when the plan is made.

The margin also covers bounding, building and publishing the command and its DDS delivery
(p99 ~5 ms, up to 13 ms, on a loaded 2-core machine: ``bench/bench_load.py``), so that no
command arrives after its first point was due.
"""

_KEEP_PREDICTIONS = 8
"""Predictions kept for ``ensemble`` (older ones no longer cover the future at any horizon)."""


@dataclass(frozen=True)
class HandoverConfig:
    """
    How consecutive plans join (see the module docstring).

    ``lookahead_steps``: points published beyond the ``action_horizon`` executed ones (-1: the
    rest of the prediction); ignored by ``rest``. ``splice_steps``: points of the new plan
    blended from the previous command (``splice``). ``ensemble_decay``: ACT's ``m`` (>= 0).
    """

    mode: str = 'spline'
    lookahead_steps: int = -1
    splice_steps: int = 3
    ensemble_decay: float = 0.01
    spline_degree: int = 3

    def __post_init__(self) -> None:
        if self.mode not in HANDOVER_MODES:
            raise ValueError(f'handover mode: expected one of {HANDOVER_MODES}, got {self.mode!r}')
        if self.lookahead_steps < -1:
            raise ValueError(f'lookahead_steps: must be >= -1, got {self.lookahead_steps}')
        if self.splice_steps < 0:
            raise ValueError(f'splice_steps: must be >= 0, got {self.splice_steps}')
        if not (np.isfinite(self.ensemble_decay) and self.ensemble_decay >= 0):
            raise ValueError(f'ensemble_decay: must be finite and >= 0, got {self.ensemble_decay}')
        if not 2 <= self.spline_degree <= 6:
            raise ValueError(f'spline_degree: must be 2..6, got {self.spline_degree}')

    def points(self, pred_horizon: int, action_horizon: int) -> int:
        """Return how many predicted points a command carries at most."""
        if self.mode == 'rest' or self.lookahead_steps == 0:
            return action_horizon
        if self.lookahead_steps < 0:
            return pred_horizon
        return min(pred_horizon, action_horizon + self.lookahead_steps)


@dataclass(frozen=True)
class Plan:
    """
    The points one command carries, in the policy's joint order.

    ``first`` is the index of the first predicted point used (the points before it were due
    before the command could arrive), ``times_ns`` the ``time_from_start`` of each point.
    """

    first: int
    positions: FloatArray
    velocities: FloatArray
    times_ns: IntArray


def hermite(
    t: float, t0: float, t1: float, p0: FloatArray, v0: FloatArray, p1: FloatArray, v1: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Return position and velocity at ``t`` on the cubic ``(t0, p0, v0) → (t1, p1, v1)``."""
    h = t1 - t0
    s = min(max((t - t0) / h, 0.0), 1.0)
    s2, s3 = s * s, s * s * s
    h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
    pos = h00 * p0 + h10 * h * v0 + h01 * p1 + h11 * h * v1
    d00, d10, d01, d11 = 6 * s2 - 6 * s, 3 * s2 - 4 * s + 1, -6 * s2 + 6 * s, 3 * s2 - 2 * s
    vel = (d00 * p0 + d01 * p1) / h + d10 * v0 + d11 * v1
    return pos, vel


@dataclass(frozen=True)
class PublishedPlan:
    """
    A command as the controller executes it.

    From ``(q_start, v_start)`` at ``start_ns`` through the points (cubic splines through
    positions and velocities), then at rest at the last point.
    """

    start_ns: int
    q_start: FloatArray
    v_start: FloatArray
    times_ns: IntArray
    positions: FloatArray
    velocities: FloatArray

    @property
    def end_ns(self) -> int:
        """Return when the last point is reached."""
        return self.start_ns + int(self.times_ns[-1])

    def sample(self, t_ns: int) -> tuple[FloatArray, FloatArray]:
        """Return the commanded ``(position, velocity)`` at ``t_ns``."""
        t = (t_ns - self.start_ns) * 1e-9
        times = self.times_ns * 1e-9
        if t >= times[-1]:
            return self.positions[-1].copy(), np.zeros_like(self.v_start)
        if t <= 0:
            return self.q_start.copy(), self.v_start.copy()
        i = int(np.searchsorted(times, t, side='right'))
        if i == 0:
            return hermite(
                t, 0.0, float(times[0]), self.q_start, self.v_start,
                self.positions[0], self.velocities[0],
            )  # fmt: skip
        return hermite(
            t, float(times[i - 1]), float(times[i]), self.positions[i - 1],
            self.velocities[i - 1], self.positions[i], self.velocities[i],
        )  # fmt: skip


def fit_anchored_polynomial(
    times: FloatArray, values: FloatArray, p0: FloatArray, v0: FloatArray, degree: int
) -> FloatArray:
    """
    Return the least-squares polynomial through ``values [P, J]`` at ``times [P]``, sampled there.

    Per joint ``p(t) = p0 + v0·t + Σ_{d=2..degree} c_d·t^d``: it starts at ``p0`` with velocity
    ``v0`` (t = 0) whatever the values; the ``c_d`` minimise the squared distance to them
    (fewer points than coefficients: the minimum-norm solution).
    """
    scale = float(times[-1])  # fit in t / scale: well conditioned whatever the period
    s = times / scale
    basis = np.stack([s**d for d in range(2, degree + 1)], axis=1)  # [P, degree - 1]
    rest = values - p0[None, :] - np.outer(times, v0)  # [P, J]
    coef, *_ = np.linalg.lstsq(basis, rest, rcond=None)  # [degree - 1, J]
    return np.asarray(p0[None, :] + np.outer(times, v0) + basis @ coef, dtype=np.float64)


class Planner:
    """
    Plans commands from predictions with the hand-over of ``config``.

    :param limits: the command bounds (the node replaces :attr:`limits` on a parameter change).
    :param dt: the control period (s); predicted point ``i`` is due ``(i + 1)·dt`` after the
        observation.
    :param action_horizon: the points executed before the next plan (the re-planning period in
        ticks).
    """

    def __init__(
        self, limits: CommandLimits, dt: float, action_horizon: int, config: HandoverConfig
    ) -> None:
        if not (dt > 0 and action_horizon >= 1):
            raise ValueError(f'need dt > 0 and action_horizon >= 1, got {dt}, {action_horizon}')
        self.limits = limits
        self.dt = float(dt)
        self.action_horizon = int(action_horizon)
        self.config = config
        self.last: PublishedPlan | None = None
        # (due time of each point [T] ns, positions [T, J] unwrapped) of recent predictions.
        self._predictions: deque[tuple[IntArray, FloatArray]] = deque(maxlen=_KEEP_PREDICTIONS)

    def reset(self) -> None:
        """Forget the published command and the predictions (a new episode, the arm moved)."""
        self.last = None
        self._predictions.clear()

    def forget_predictions(self) -> None:
        """Drop the predictions kept for ensembling (the observation history restarted)."""
        self._predictions.clear()

    def running(self, now_ns: int) -> PublishedPlan | None:
        """Return the last command if it still moves the arm at ``now_ns``."""
        if self.last is not None and now_ns < self.last.end_ns:
            return self.last
        return None

    def plan(self, pred: npt.ArrayLike, q_meas: npt.ArrayLike, obs_ns: int, start_ns: int) -> Plan:
        """
        Return the bounded command for prediction ``pred [T, J]`` and remember it.

        ``q_meas [J]`` is the measured position of the observation taken at ``obs_ns``; the
        command takes effect at ``start_ns`` (>= ``obs_ns``).

        :raises UnsafeCommandError: a non-finite prediction, every point already due, or bounds
            that cannot be met (nothing is remembered then).
        """
        p = np.asarray(pred, dtype=np.float64)
        if p.ndim != 2 or not np.all(np.isfinite(p)):
            raise UnsafeCommandError('the model predicted non-finite joint positions')
        q = np.asarray(q_meas, dtype=np.float64)
        horizon = p.shape[0]
        count = self.config.points(horizon, self.action_horizon)
        first, times_ns = retime_window(horizon, self.dt, start_ns - obs_ns, count, MIN_LEAD_NS)
        unwrapped = unwrap_continuous(p, q, self.limits.continuous)
        window = unwrapped[first:][: times_ns.shape[0]].copy()
        abs_ns = start_ns + times_ns
        previous = self.running(start_ns)
        running_state = None if previous is None else previous.sample(start_ns)
        v_start = None if running_state is None else running_state[1]
        if self.config.mode == 'splice' and previous is not None:
            window = self._splice(window, abs_ns, previous)
        elif self.config.mode == 'ensemble':
            window = self._ensemble(window, abs_ns)
        elif self.config.mode == 'spline':
            if running_state is None:
                p0, v0 = prev_start(q, self.limits), np.zeros_like(q)
            else:
                p0, v0 = self._near(running_state[0], window[0]), running_state[1]
            window = fit_anchored_polynomial(
                np.asarray(times_ns * 1e-9, dtype=np.float64),
                window,
                p0,
                v0,
                self.config.spline_degree,
            )
        positions, velocities = bound_trajectory(window, q, times_ns * 1e-9, self.limits, v_start)
        if self.config.mode == 'ensemble':  # the only mode that reads earlier predictions
            due_ns = obs_ns + np.round((np.arange(horizon) + 1.0) * self.dt * 1e9).astype(np.int64)
            self._predictions.append((due_ns, unwrapped))
        self.last = PublishedPlan(
            start_ns=int(start_ns),
            q_start=prev_start(q, self.limits),
            v_start=np.zeros_like(q) if v_start is None else v_start,
            times_ns=times_ns,
            positions=positions,
            velocities=velocities,
        )
        return Plan(first, positions, velocities, times_ns)

    def _splice(
        self, window: FloatArray, abs_ns: IntArray, previous: PublishedPlan
    ) -> FloatArray:
        """Blend the first ``splice_steps`` points from the previous command into ``window``."""
        steps = self.config.splice_steps
        for k in range(min(steps, window.shape[0])):
            if abs_ns[k] > previous.end_ns:
                break  # the previous command is at rest there: nothing to continue
            w = (steps - k) / (steps + 1)
            old = self._near(previous.sample(int(abs_ns[k]))[0], window[k])
            window[k] = w * old + (1 - w) * window[k]
        return window

    def _near(self, value: FloatArray, ref: FloatArray) -> FloatArray:
        """Return ``value`` with continuous joints moved to the 2π-equivalent nearest ``ref``."""
        return kinematics.nearest_equivalent(value, ref, self.limits.continuous)

    def _ensemble(self, window: FloatArray, abs_ns: IntArray) -> FloatArray:
        """Average ``window`` with the earlier predictions covering each point (oldest first)."""
        covering = [
            (due, pos) for due, pos in self._predictions if due[0] <= abs_ns[0] <= due[-1]
        ]
        if not covering:
            return window
        m = self.config.ensemble_decay
        out = window.copy()
        for k, t in enumerate(abs_ns):
            values = [
                self._near(
                    np.array([np.interp(t, due, pos[:, j]) for j in range(pos.shape[1])]),
                    window[k],
                )
                for due, pos in covering
                if due[0] <= t <= due[-1]
            ]
            values.append(window[k])  # the newest prediction last
            weights = np.exp(-m * np.arange(len(values)))
            out[k] = np.average(np.stack(values), axis=0, weights=weights)
        return out
