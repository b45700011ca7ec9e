"""
Command safety: the one place that bounds a predicted joint trajectory before it reaches a robot.

Pure numpy (no ROS, no torch). The policy node calls :func:`bound_trajectory` on every plan; what
comes out is finite, inside the position limits, moves no joint faster than
``velocity_limit x velocity_scale`` between consecutive points (starting from the measured
position), commands continuous joints the shortest way from the measured angle, and carries
velocities consistent with the positions (central differences, last point at rest).

Arrays are per joint, in one fixed joint order chosen by the caller (the node uses the
checkpoint's training order).
"""

from dataclasses import dataclass, field

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import UnsafeCommandError
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_TWO_PI = 2.0 * np.pi


def _vector(value: npt.ArrayLike, name: str, n: int | None = None) -> FloatArray:
    arr = np.array(value, dtype=np.float64)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = f'[{n}]' if n is not None else 'a 1-D array'
        raise ValueError(f'{name}: expected {want}, got shape {arr.shape}')
    return arr


@dataclass(frozen=True)
class CommandLimits:
    """
    Per-joint bounds applied to every command.

    ``lower``/``upper`` are position limits in rad (ignored, and allowed to be infinite, for
    continuous joints), ``velocity`` the velocity limits in rad/s (finite, > 0), ``continuous``
    marks joints without position limits, ``velocity_scale`` in (0, 1] scales every velocity
    limit. Arrays are copied and made read-only.
    """

    lower: FloatArray
    upper: FloatArray
    velocity: FloatArray
    continuous: BoolArray
    velocity_scale: float = 1.0
    names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        lower = _vector(self.lower, 'CommandLimits.lower')
        n = lower.shape[0]
        if n == 0:
            raise ValueError('CommandLimits.lower: at least one joint is needed')
        upper = _vector(self.upper, 'CommandLimits.upper', n)
        velocity = _vector(self.velocity, 'CommandLimits.velocity', n)
        continuous = np.array(self.continuous, dtype=np.bool_)
        if continuous.shape != (n,):
            raise ValueError(
                f'CommandLimits.continuous: expected [{n}] booleans, got shape {continuous.shape}'
            )
        limited = ~continuous
        for name, arr in (('lower', lower), ('upper', upper)):
            bad = limited & ~np.isfinite(arr)
            if bad.any():
                raise ValueError(
                    f'CommandLimits.{name}: joints {np.flatnonzero(bad).tolist()} are not '
                    f'continuous and need a finite position limit, got {arr[bad].tolist()}'
                )
        bad = limited & ~(lower < upper)
        if bad.any():
            raise ValueError(
                f'CommandLimits.lower/upper: lower must be < upper for joints '
                f'{np.flatnonzero(bad).tolist()}, got lower={lower[bad].tolist()} '
                f'upper={upper[bad].tolist()}'
            )
        if not (np.all(np.isfinite(velocity)) and np.all(velocity > 0)):
            raise ValueError(
                f'CommandLimits.velocity: every velocity limit must be finite and > 0, got '
                f'{velocity.tolist()}'
            )
        scale = float(self.velocity_scale)
        if not (np.isfinite(scale) and 0.0 < scale <= 1.0):
            raise ValueError(f'CommandLimits.velocity_scale: must be in (0, 1], got {scale}')
        if self.names and len(self.names) != n:
            raise ValueError(f'CommandLimits.names: expected {n} names, got {len(self.names)}')
        # Continuous joints have no position limit, whatever was passed.
        lower = np.where(continuous, -np.inf, lower)
        upper = np.where(continuous, np.inf, upper)
        for arr in (lower, upper, velocity):
            arr.setflags(write=False)
        continuous.setflags(write=False)
        object.__setattr__(self, 'lower', lower)
        object.__setattr__(self, 'upper', upper)
        object.__setattr__(self, 'velocity', velocity)
        object.__setattr__(self, 'continuous', continuous)
        object.__setattr__(self, 'velocity_scale', scale)
        object.__setattr__(self, 'names', tuple(self.names))

    @property
    def num_joints(self) -> int:
        """Return the number of joints."""
        return int(self.lower.shape[0])

    @property
    def max_velocity(self) -> FloatArray:
        """Return the effective velocity bound, ``velocity x velocity_scale`` (rad/s)."""
        return np.asarray(self.velocity * self.velocity_scale, dtype=np.float64)

    @classmethod
    def gen3(cls, velocity_scale: float = 1.0) -> 'CommandLimits':
        """Return the Kinova Gen3 limits of :mod:`kinova_policy_ros.core.kinematics`."""
        return cls(
            lower=kinematics.POSITION_LOWER,
            upper=kinematics.POSITION_UPPER,
            velocity=kinematics.VELOCITY_LIMITS,
            continuous=kinematics.CONTINUOUS,
            velocity_scale=velocity_scale,
            names=kinematics.JOINT_NAMES,
        )


def map_measured_into_range(
    q_meas: npt.ArrayLike, q_min: npt.ArrayLike, q_max: npt.ArrayLike, continuous: npt.ArrayLike
) -> FloatArray:
    """
    Map measured continuous-joint angles into the range the model was trained on.

    The Kortex driver wraps arm angles to [-π, π], while a demonstration may have been recorded
    around, say, joint_3 ≈ π with values on both sides of it. For each continuous joint the
    equivalent angle ``q + 2πk`` is chosen that lies inside ``[q_min, q_max]`` (keeping ``q``
    itself when it already does), else the one nearest to that interval. Other joints, and
    joints whose range is not finite, are returned unchanged.
    """
    q = _vector(q_meas, 'q_meas')
    n = q.shape[0]
    lo = _vector(q_min, 'q_min', n)
    hi = _vector(q_max, 'q_max', n)
    mask = np.array(continuous, dtype=np.bool_)
    if mask.shape != (n,):
        raise ValueError(f'continuous: expected [{n}] booleans, got shape {mask.shape}')
    out = q.copy()
    usable = mask & np.isfinite(lo) & np.isfinite(hi) & np.isfinite(q) & (lo <= hi)
    for j in np.flatnonzero(usable):
        if lo[j] <= q[j] <= hi[j]:
            continue
        mid = 0.5 * (lo[j] + hi[j])
        k0 = np.round((mid - q[j]) / _TWO_PI)
        candidates = q[j] + _TWO_PI * (k0 + np.arange(-2, 3))
        distance = np.maximum(lo[j] - candidates, 0.0) + np.maximum(candidates - hi[j], 0.0)
        out[j] = candidates[int(np.argmin(distance + 1e-9 * np.abs(candidates - mid)))]
    return out


def point_times(num_points: int, dt: float) -> FloatArray:
    """Return the nominal times ``(i + 1) * dt`` of ``num_points`` points (s)."""
    return (np.arange(num_points, dtype=np.float64) + 1.0) * float(dt)


def retime_window(
    pred_horizon: int, dt: float, elapsed_ns: int, action_horizon: int, min_lead_ns: int = 0
) -> tuple[int, npt.NDArray[np.int64]]:
    """
    Latency compensation: choose and re-time the predicted points a command carries.

    Predicted point ``i`` is due ``(i + 1) * dt`` after the observation; the model took
    ``elapsed_ns``, and the command starts on arrival. Points due in less than ``min_lead_ns``
    are dropped, the others keep their due time measured from now. Up to ``action_horizon``
    points are taken, sliding into the predicted horizon past the dropped ones.

    :return: ``(first, times_ns)``: the index of the first predicted point used and the
        ``time_from_start`` of each point in integer nanoseconds (strictly increasing, >=
        ``min_lead_ns``).
    :raises UnsafeCommandError: when every predicted point is already due.
    """
    if pred_horizon < 1 or action_horizon < 1:
        raise ValueError(
            f'need pred_horizon and action_horizon >= 1, got {pred_horizon}, {action_horizon}'
        )
    due_ns = np.round((np.arange(pred_horizon) + 1.0) * float(dt) * 1e9).astype(np.int64)
    times_ns = due_ns - int(elapsed_ns)
    usable = np.flatnonzero(times_ns >= min_lead_ns)
    if usable.size == 0:
        raise UnsafeCommandError(
            f'the model took {elapsed_ns * 1e-9:.3f} s, longer than the predicted horizon '
            f'({pred_horizon} x {dt} s)'
        )
    first = int(usable[0])
    return first, times_ns[first:][:action_horizon]


def bound_trajectory(
    pred: npt.ArrayLike,
    q_meas: npt.ArrayLike,
    times: float | npt.ArrayLike,
    limits: CommandLimits,
) -> tuple[FloatArray, FloatArray]:
    """
    Bound predicted positions ``pred [A, J]`` into a command that is safe to publish.

    ``q_meas [J]`` is the measured position in the robot's (driver's) angle convention, ``times``
    either the control period ``dt`` (points at ``(i + 1) * dt``) or the strictly increasing
    ``time_from_start [A]`` of each point (s, all > 0). Steps, in order:

    1. every input must be finite (else :class:`UnsafeCommandError`; nothing is returned);
    2. continuous joints are unwrapped: the first point is taken the shortest way from
       ``q_meas``, each next point the shortest way from the previous one;
    3. positions are clamped to ``[lower, upper]``;
    4. the change from the previous point (from ``q_meas`` clamped to the limits for the first
       one) is bounded by ``velocity x velocity_scale x Δt``;
    5. velocities are central differences of the bounded positions (the first uses ``q_meas`` at
       t = 0), and the last point's velocity is 0.

    Invariants: finite output; positions within limits; ``|Δq| <= vmax·Δt`` between consecutive
    points (and from the measured position when it lies inside the limits); ``|v| <= vmax``.

    :return: ``(positions [A, J], velocities [A, J])``, float64.
    """
    p = np.array(pred, dtype=np.float64)
    n = limits.num_joints
    if p.ndim != 2 or p.shape[1] != n or p.shape[0] == 0:
        raise UnsafeCommandError(f'prediction: expected [A >= 1, {n}] positions, got {p.shape}')
    q = np.array(q_meas, dtype=np.float64)
    if q.shape != (n,):
        raise UnsafeCommandError(f'measured position: expected [{n}], got shape {q.shape}')
    num = p.shape[0]
    t = np.array(times, dtype=np.float64).reshape(-1)
    if np.ndim(times) == 0:
        t = point_times(num, float(t[0]))
    if t.shape != (num,) or not np.all(np.isfinite(t)):
        raise UnsafeCommandError(f'times: expected {num} finite values, got {t.tolist()}')
    steps = np.diff(np.concatenate([[0.0], t]))
    if not np.all(steps > 0):
        raise UnsafeCommandError(f'times: must be > 0 and strictly increasing, got {t.tolist()}')
    _require_finite(p, 'prediction', limits)
    _require_finite(q, 'measured position', limits)

    cont = limits.continuous
    # 2. unwrap continuous joints, point by point, from the measured angle.
    if cont.any():
        ref = q.copy()
        for i in range(num):
            k = np.round((ref[cont] - p[i, cont]) / _TWO_PI)
            p[i, cont] += _TWO_PI * k
            ref = p[i]
    # 3. position limits.
    p = np.clip(p, limits.lower, limits.upper)
    # 4. velocity bound, relative to the previous point.
    vmax = limits.max_velocity
    prev = np.clip(q, limits.lower, limits.upper)
    for i in range(num):
        step = vmax * steps[i]
        p[i] = np.clip(p[i], prev - step, prev + step)
        prev = p[i]
    # Limits again (only matters when the measured position is outside them).
    p = np.clip(p, limits.lower, limits.upper)
    # 5. velocities: central differences through (0, q_start), last point at rest.
    start = np.clip(q, limits.lower, limits.upper)
    pos_ext = np.vstack([start[None, :], p])
    t_ext = np.concatenate([[0.0], t])
    v = np.zeros_like(p)
    if num > 1:
        v[:-1] = (pos_ext[2:] - pos_ext[:-2]) / (t_ext[2:] - t_ext[:-2])[:, None]
    v = np.clip(v, -vmax, vmax)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(v))):  # pragma: no cover - defensive
        raise UnsafeCommandError('bounded command is not finite')
    return p, v


def _require_finite(arr: FloatArray, what: str, limits: CommandLimits) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = sorted({int(c) for c in np.argwhere(bad)[:, -1]})
        names = [limits.names[c] for c in cols] if limits.names else cols
        raise UnsafeCommandError(f'{what}: non-finite values for joints {names}')
