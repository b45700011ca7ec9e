"""
The command invariants of ``docs/safety.md`` as one check, for tests that watch the node.

:func:`command_violations` takes a published ``trajectory_msgs/JointTrajectory`` (any object
with ``joint_names`` and ``points``, each point with ``positions``, ``velocities`` and
``time_from_start``; no ROS import here) and returns every violated invariant as a
:class:`Violation` (empty: the command is safe): names and count, finite values, position
limits, speed from point to point (and from the measured position, when given) within
``velocity x velocity_scale``, velocities within that bound and 0 at the last point, strictly
increasing ``time_from_start`` with the first point at least ``MIN_LEAD_NS`` (10 ms) ahead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kinova_policy_ros.core.stamps import SecNanosec, stamp_to_ns
from kinova_policy_ros.policy.handover import MIN_LEAD_NS
from kinova_policy_ros.policy.safety import CommandLimits
import numpy as np
import numpy.typing as npt

__all__ = [
    'MIN_LEAD_NS',
    'RULES',
    'PointLike',
    'TrajectoryLike',
    'Violation',
    'command_violations',
]

RULES = ('names', 'shape', 'finite', 'limits', 'speed', 'velocity', 'rest', 'time')
"""The rule of each :class:`Violation`, in the order they are checked."""


class PointLike(Protocol):
    """What ``trajectory_msgs/JointTrajectoryPoint`` offers the check."""

    @property
    def positions(self) -> Sequence[float]: ...

    @property
    def velocities(self) -> Sequence[float]: ...

    @property
    def time_from_start(self) -> SecNanosec: ...


class TrajectoryLike(Protocol):
    """What ``trajectory_msgs/JointTrajectory`` offers the check."""

    @property
    def joint_names(self) -> Sequence[str]: ...

    @property
    def points(self) -> Sequence[PointLike]: ...


@dataclass(frozen=True)
class Violation:
    """One violated invariant: its rule (one of :data:`RULES`) and what was found."""

    rule: str
    detail: str

    def __str__(self) -> str:
        """Return ``rule: detail``."""
        return f'{self.rule}: {self.detail}'


def command_violations(
    msg: TrajectoryLike,
    names: Sequence[str],
    limits: CommandLimits,
    measured: npt.ArrayLike | None = None,
    atol: float = 1e-6,
) -> list[Violation]:
    """
    Return every invariant of ``docs/safety.md`` that the command ``msg`` violates.

    :param names: the joint names the command must carry, in its order; ``limits`` are in that
        order too.
    :param measured: the measured positions ``[n]`` the command was planned from (the speed to
        the first point is then checked from them, clamped to the limits), or None.
    :param atol: tolerance of the limit, speed and velocity comparisons (rad, rad/s).
    """
    n = len(names)
    if list(msg.joint_names) != list(names):
        return [Violation('names', f'expected {list(names)}, got {list(msg.joint_names)}')]
    if not msg.points:
        return [Violation('shape', 'the command has no point')]
    bad = [
        i
        for i, p in enumerate(msg.points)
        if len(p.positions) != n or len(p.velocities) != n
    ]
    if bad:
        return [Violation('shape', f'points {bad} do not carry {n} positions and velocities')]
    q = np.array([list(p.positions) for p in msg.points], dtype=np.float64)
    v = np.array([list(p.velocities) for p in msg.points], dtype=np.float64)
    t = np.array([stamp_to_ns(p.time_from_start) for p in msg.points], dtype=np.int64)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(v))):
        return [Violation('finite', 'a position or velocity is NaN or infinite')]
    found = _time_violations(t)
    found += _limit_violations(q, v, limits, atol)
    if not found:  # the speed needs increasing times
        found += _speed_violations(q, t, limits, measured, atol)
    return found


def _time_violations(t: npt.NDArray[np.int64]) -> list[Violation]:
    found = []
    if t[0] < MIN_LEAD_NS:
        found.append(Violation('time', f'first point at {t[0]} ns, before {MIN_LEAD_NS} ns'))
    if np.any(np.diff(t) <= 0):
        found.append(Violation('time', f'time_from_start not strictly increasing: {t.tolist()}'))
    return found


def _limit_violations(
    q: npt.NDArray[np.float64], v: npt.NDArray[np.float64], limits: CommandLimits, atol: float
) -> list[Violation]:
    found = []
    outside = (q < limits.lower - atol) | (q > limits.upper + atol)
    if outside.any():
        point, joint = (int(x) for x in np.argwhere(outside)[0])
        found.append(
            Violation(
                'limits',
                f'point {point} joint {joint}: {q[point, joint]} outside '
                f'[{limits.lower[joint]}, {limits.upper[joint]}]',
            )
        )
    vmax = limits.max_velocity
    fast = np.abs(v) > vmax + atol
    if fast.any():
        point, joint = (int(x) for x in np.argwhere(fast)[0])
        found.append(
            Violation(
                'velocity',
                f'point {point} joint {joint}: velocity {v[point, joint]} beyond {vmax[joint]}',
            )
        )
    if np.any(np.abs(v[-1]) > atol):
        found.append(Violation('rest', f'last point velocity {v[-1].tolist()} is not 0'))
    return found


def _speed_violations(
    q: npt.NDArray[np.float64],
    t: npt.NDArray[np.int64],
    limits: CommandLimits,
    measured: npt.ArrayLike | None,
    atol: float,
) -> list[Violation]:
    times = t.astype(np.float64) * 1e-9
    if measured is None:
        start, steps = q[:-1], np.diff(times)
        ends = q[1:]
        first = 1
    else:
        q0 = np.clip(np.asarray(measured, dtype=np.float64), limits.lower, limits.upper)
        start = np.vstack([q0, q[:-1]])
        steps = np.diff(np.concatenate([[0.0], times]))
        ends = q
        first = 0
    allowed = limits.max_velocity[None, :] * steps[:, None] + atol
    fast = np.abs(ends - start) > allowed
    if not fast.any():
        return []
    row, joint = (int(x) for x in np.argwhere(fast)[0])
    frm = 'the measured position' if row + first == 0 else f'point {row + first - 1}'
    return [
        Violation(
            'speed',
            f'point {row + first} joint {joint}: {abs(ends[row, joint] - start[row, joint]):.6g} '
            f'rad from {frm} in {steps[row]:.6g} s, allowed {allowed[row, joint]:.6g}',
        )
    ]
