"""
Command safety: the one place that bounds a predicted joint trajectory before it reaches a robot.

Pure numpy (no ROS, no torch). The policy node calls :func:`bound_trajectory` on every plan; what
comes out is finite, inside the position limits, moves no joint faster than
``velocity_limit x velocity_scale`` between consecutive points (starting from the measured
position), changes speed no faster than the acceleration limits allow (when they are set), commands
continuous joints the shortest way from the measured angle, and carries velocities consistent with
the positions (central differences, last point at rest).

Arrays are per joint, in one fixed joint order chosen by the caller (the node uses the
checkpoint's training order).
"""

from dataclasses import dataclass, field
import math

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
    limit; ``acceleration`` the acceleration limits in rad/s² (> 0; ``inf`` or None: no bound).
    Arrays are copied and made read-only.
    """

    lower: FloatArray
    upper: FloatArray
    velocity: FloatArray
    continuous: BoolArray
    velocity_scale: float = 1.0
    names: tuple[str, ...] = field(default=())
    acceleration: FloatArray | None = None

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
        acceleration = (
            np.full(n, np.inf)
            if self.acceleration is None
            else _vector(self.acceleration, 'CommandLimits.acceleration', n)
        )
        if not np.all(acceleration > 0):  # NaN fails too
            raise ValueError(
                f'CommandLimits.acceleration: every acceleration limit must be > 0 (inf: no '
                f'bound), got {acceleration.tolist()}'
            )
        if self.names and len(self.names) != n:
            raise ValueError(f'CommandLimits.names: expected {n} names, got {len(self.names)}')
        # Continuous joints have no position limit, whatever was passed.
        lower = np.where(continuous, -np.inf, lower)
        upper = np.where(continuous, np.inf, upper)
        for arr in (lower, upper, velocity, acceleration):
            arr.setflags(write=False)
        continuous.setflags(write=False)
        object.__setattr__(self, 'lower', lower)
        object.__setattr__(self, 'upper', upper)
        object.__setattr__(self, 'velocity', velocity)
        object.__setattr__(self, 'acceleration', acceleration)
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

    @property
    def max_acceleration(self) -> FloatArray:
        """Return the acceleration bound (rad/s², ``inf`` where there is none)."""
        assert self.acceleration is not None  # set in __post_init__
        return self.acceleration

    @property
    def bounds_acceleration(self) -> bool:
        """Return whether any joint has a finite acceleration limit."""
        return bool(np.isfinite(self.max_acceleration).any())

    @classmethod
    def gen3(cls, velocity_scale: float = 1.0, acceleration: bool = False) -> 'CommandLimits':
        """
        Return the Kinova Gen3 limits of :mod:`kinova_policy_ros.core.kinematics`.

        ``acceleration`` adds ``kinematics.ACCELERATION_LIMITS`` (the policy node's default).
        """
        return cls(
            lower=kinematics.POSITION_LOWER,
            upper=kinematics.POSITION_UPPER,
            velocity=kinematics.VELOCITY_LIMITS,
            continuous=kinematics.CONTINUOUS,
            velocity_scale=velocity_scale,
            names=kinematics.JOINT_NAMES,
            acceleration=kinematics.ACCELERATION_LIMITS if acceleration else None,
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
    v_start: npt.ArrayLike | None = None,
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
    5. with finite acceleration limits ``a``: the segment velocities ``u_i = (p_i - p_{i-1}) /
       Δt_i`` are re-integrated so that consecutive ones differ by at most ``a·τ_i`` (``τ_i``
       the time between the segments' midpoints; the first from ``v_start`` at t = 0, the
       velocity the arm is commanded to have when the command starts, default 0), the last ends
       at rest (``|u_A| <= a·Δt_A / 2``) and no joint comes closer to a position limit than it
       can still brake for (``|u| <= sqrt(2·a·d)``) — see :func:`limit_acceleration`;
    6. velocities are central differences of the bounded positions (the first uses ``q_meas`` at
       t = 0), and the last point's velocity is 0.

    Invariants: finite output; positions within limits; ``|Δq| <= vmax·Δt`` between consecutive
    points (and from the measured position when it lies inside the limits); ``|v| <= vmax``;
    with acceleration limits ``|u_i - u_{i-1}| <= a·τ_i`` between consecutive segments (from
    ``v_start`` too, unless it is too fast to stop within the command or before a limit: the stop
    and the position limit take precedence).

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

    # 2. unwrap continuous joints, point by point, from the measured angle.
    p = unwrap_continuous(p, q, limits.continuous)
    # 3. position limits.
    p = np.clip(p, limits.lower, limits.upper)
    # 4. velocity bound, relative to the previous point (with acceleration limits step 5 bounds
    # every segment speed by vmax itself).
    vmax = limits.max_velocity
    start = prev_start(q, limits)
    if not limits.bounds_acceleration:
        prev = start
        for i in range(num):
            step = vmax * steps[i]
            p[i] = np.clip(p[i], prev - step, prev + step)
            prev = p[i]
    # 5. acceleration bound (re-integrates the positions from the start).
    else:
        v0 = np.zeros(n) if v_start is None else np.array(v_start, dtype=np.float64)
        if v0.shape != (n,) or not np.all(np.isfinite(v0)):
            raise UnsafeCommandError(f'start velocity: expected [{n}] finite values, got {v0}')
        p = limit_acceleration(p, start, steps, v0, limits)
    # Limits again (only matters when the measured position is outside them).
    p = np.clip(p, limits.lower, limits.upper)
    # 6. velocities: central differences through (0, q_start), last point at rest.
    pos_ext = np.vstack([start[None, :], p])
    t_ext = np.concatenate([[0.0], t])
    v = np.zeros_like(p)
    if num > 1:
        v[:-1] = (pos_ext[2:] - pos_ext[:-2]) / (t_ext[2:] - t_ext[:-2])[:, None]
    v = np.clip(v, -vmax, vmax)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(v))):  # pragma: no cover - defensive
        raise UnsafeCommandError('bounded command is not finite')
    return p, v


def unwrap_continuous(
    positions: npt.ArrayLike, q_ref: npt.ArrayLike, continuous: npt.ArrayLike
) -> FloatArray:
    """
    Return ``positions [A, J]`` with continuous joints unwrapped from ``q_ref [J]``.

    The first point is taken the shortest way (the 2π-equivalent nearest) from ``q_ref``, each
    next one the shortest way from the previous one; other joints are unchanged.
    """
    p = np.array(positions, dtype=np.float64)
    cont = np.asarray(continuous, dtype=np.bool_)
    if cont.any():
        # Shifting point i by 2π·m_i with m_i = m_(i-1) - round(d_i / 2π), d_i the raw step
        # from the previous point (from q_ref for the first), is the point-by-point rule.
        block = np.vstack([np.asarray(q_ref, dtype=np.float64)[cont][None, :], p[:, cont]])
        turns = np.cumsum(np.round(np.diff(block, axis=0) / _TWO_PI), axis=0)  # [A, C]
        p[:, cont] -= _TWO_PI * turns
    return p


def prev_start(q_meas: FloatArray, limits: CommandLimits) -> FloatArray:
    """Return where a command starts from: the measured position clamped to the limits."""
    return np.asarray(np.clip(q_meas, limits.lower, limits.upper), dtype=np.float64)


def limit_acceleration(
    positions: FloatArray,
    start: FloatArray,
    steps: FloatArray,
    v_start: FloatArray,
    limits: CommandLimits,
) -> FloatArray:
    """
    Re-integrate ``positions [A, J]`` from ``start [J]`` under the acceleration limits.

    ``steps [A]`` are the durations of the segments (> 0), ``v_start [J]`` the velocity at
    t = 0. Segment ``i`` moves at ``u_i = (p_i - p_{i-1}) / steps[i]``. A backward pass gives
    the largest speed of each segment from which the command can still end at rest
    (``U_A = a·steps[A] / 2``, ``U_i = min(vmax, U_{i+1} + a·τ_{i+1})``); the forward pass then
    takes each wanted ``u_i`` as close as the bounds allow to ``u_{i-1}`` (``± a·τ_i``), to
    ``±U_i``, to the velocity limit and to the braking distance of the position limits. Where
    they cannot all hold (a start velocity too fast to stop, or too close to a limit), the stop
    and the limit win.
    """
    accel = limits.max_acceleration
    vmax = limits.max_velocity
    num = positions.shape[0]
    # τ_i: time between the midpoints of segments i - 1 and i (t = 0 for the start velocity).
    tau = np.empty(num)
    tau[0] = steps[0] / 2
    tau[1:] = (steps[:-1] + steps[1:]) / 2
    a_tau = accel[None, :] * tau[:, None]  # [A, J], inf where there is no bound
    reach = np.empty((num, positions.shape[1]))  # U_i
    reach[-1] = np.minimum(vmax, accel * steps[-1] / 2)
    for i in range(num - 2, -1, -1):
        reach[i] = np.minimum(vmax, reach[i + 1] + a_tau[i + 1])
    first_reach = reach[0] + a_tau[0]
    u_prev = np.minimum(np.maximum(v_start, -first_reach), first_reach)
    # Joints that can reach a position limit within the command (its whole travel plus a full
    # stop); the braking bound is computed for those only (often none or one).
    travel = vmax * float(np.sum(steps))
    with np.errstate(invalid='ignore'):  # inf / inf for joints without an acceleration bound
        stop = (vmax + accel * float(np.max(steps))) ** 2 / (2 * accel)
    room = np.minimum(limits.upper - start, start - limits.lower)
    near = [int(j) for j in np.flatnonzero((room <= travel + stop) & np.isfinite(accel))]
    prev = start.copy()
    out = np.empty_like(positions)
    for i in range(num):
        want = (positions[i] - prev) / steps[i]
        lo = np.maximum(u_prev - a_tau[i], -reach[i])
        hi = np.minimum(u_prev + a_tau[i], reach[i])
        u = np.minimum(np.maximum(want, lo), hi)
        for j in near:
            up, down = _braking_speeds(
                float(accel[j]), float(limits.upper[j] - prev[j]),
                float(prev[j] - limits.lower[j]), float(steps[i]),
            )  # fmt: skip
            u[j] = min(max(float(u[j]), -down), up)
        prev = prev + u * steps[i]
        out[i] = prev
        u_prev = u
    return out


def _braking_speeds(
    accel: float, room_up: float, room_down: float, step: float
) -> tuple[float, float]:
    """
    Return the largest segment speeds ``(up, down)`` from which a joint still stops in time.

    Segments of ``step`` s, each slower by ``a·step``, cover at most ``u²/(2a) + u·step/2 +
    a·step²/8 = (u + a·step/2)² / (2a)`` from segment speed ``u`` to rest: the largest ``u``
    with that within the room left to the limit, and never past the limit within the segment
    itself.
    """
    speeds = []
    for room in (max(room_up, 0.0), max(room_down, 0.0)):
        within = math.sqrt(2 * accel * room) - accel * step / 2
        speeds.append(min(room / step, max(within, 0.0)))
    return speeds[0], speeds[1]


def _require_finite(arr: FloatArray, what: str, limits: CommandLimits) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = sorted({int(c) for c in np.argwhere(bad)[:, -1]})
        names = [limits.names[c] for c in cols] if limits.names else cols
        raise UnsafeCommandError(f'{what}: non-finite values for joints {names}')
