"""
Property-based tests of command safety (hypothesis): the invariants of docs/safety.md.

Whatever the model predicts and the robot measures, :func:`bound_trajectory` either refuses
(``UnsafeCommandError``: non-finite input, wrong shapes or times) or returns a command that is
finite, inside the position limits, no faster than ``velocity x velocity_scale`` between
consecutive points and from the measured state, with velocities within the bound.
"""

from hypothesis import assume, given, HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import UnsafeCommandError
from kinova_policy_ros.policy.safety import (
    bound_trajectory,
    CommandLimits,
    map_measured_into_range,
    retime_window,
)
import numpy as np
import pytest

J = kinematics.NUM_JOINTS
# Tolerance of the float64 comparisons (values are O(10) rad, steps O(1e-3)).
EPS = 1e-9
CASES = settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite = st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False)


@st.composite
def limits_st(draw: st.DrawFn) -> CommandLimits:
    """Random valid limits: some continuous joints, finite lower < upper, positive speeds."""
    n = draw(st.integers(1, 8))
    continuous = draw(hnp.arrays(np.bool_, n))
    lower = draw(hnp.arrays(np.float64, n, elements=st.floats(-6.0, 0.0)))
    width = draw(hnp.arrays(np.float64, n, elements=st.floats(0.01, 6.0)))
    velocity = draw(hnp.arrays(np.float64, n, elements=st.floats(0.01, 5.0)))
    scale = draw(st.floats(0.01, 1.0))
    return CommandLimits(lower, lower + width, velocity, continuous, scale)


@st.composite
def case_st(draw: st.DrawFn) -> tuple[CommandLimits, np.ndarray, np.ndarray, np.ndarray]:
    limits = draw(limits_st())
    n = limits.num_joints
    a = draw(st.integers(1, 12))
    pred = draw(hnp.arrays(np.float64, (a, n), elements=finite))
    q = draw(hnp.arrays(np.float64, n, elements=finite))
    steps = draw(hnp.arrays(np.float64, a, elements=st.floats(1e-3, 0.5)))
    return limits, pred, q, np.cumsum(steps)


def _check_invariants(limits, q, times, pos, vel):
    n = limits.num_joints
    assert pos.shape == vel.shape == (times.shape[0], n)
    assert np.all(np.isfinite(pos)) and np.all(np.isfinite(vel))
    limited = ~limits.continuous
    assert np.all(pos[:, limited] >= limits.lower[limited] - EPS)
    assert np.all(pos[:, limited] <= limits.upper[limited] + EPS)
    vmax = limits.max_velocity
    start = np.clip(q, limits.lower, limits.upper)
    dq = np.diff(np.vstack([start, pos]), axis=0)
    dt = np.diff(np.concatenate([[0.0], times]))
    assert np.all(np.abs(dq) <= vmax * dt[:, None] * (1 + 1e-9) + EPS)
    assert np.all(np.abs(vel) <= vmax + EPS)
    assert np.all(vel[-1] == 0.0)  # the trajectory ends at rest


@CASES
@given(case_st())
def test_bounded_command_satisfies_every_invariant(case):
    limits, pred, q, times = case
    pos, vel = bound_trajectory(pred, q, times, limits)
    _check_invariants(limits, q, times, pos, vel)


@CASES
@given(case_st(), st.floats(1e-3, 0.5))
def test_scalar_dt_is_points_at_multiples_of_dt(case, dt):
    limits, pred, q, _ = case
    pos, vel = bound_trajectory(pred, q, dt, limits)
    times = (np.arange(pred.shape[0]) + 1.0) * dt
    _check_invariants(limits, q, times, pos, vel)


@CASES
@given(case_st(), st.data())
def test_non_finite_input_is_refused_never_commanded(case, data):
    limits, pred, q, times = case
    target = data.draw(st.sampled_from(['pred', 'q']))
    bad = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if target == 'pred':
        i = data.draw(st.integers(0, pred.shape[0] - 1))
        j = data.draw(st.integers(0, pred.shape[1] - 1))
        pred = pred.copy()
        pred[i, j] = bad
    else:
        j = data.draw(st.integers(0, q.shape[0] - 1))
        q = q.copy()
        q[j] = bad
    with pytest.raises(UnsafeCommandError, match='non-finite values for joints'):
        bound_trajectory(pred, q, times, limits)


@CASES
@given(case_st(), hnp.arrays(np.float64, st.integers(1, 12), elements=any_float))
def test_bad_times_are_refused(case, times):
    limits, pred, q, _ = case
    with np.errstate(invalid='ignore'):
        steps = np.diff(np.concatenate([[0.0], times]))
    ok = (
        times.shape[0] == pred.shape[0]
        and np.all(np.isfinite(times))
        and np.all(steps > 0)
    )
    assume(not ok)
    with pytest.raises(UnsafeCommandError, match='times'):
        bound_trajectory(pred, q, times, limits)


@CASES
@given(
    limits_st(),
    st.integers(0, 3),
    st.integers(0, 14),
)
def test_wrong_shapes_are_refused(limits, extra_dim, a):
    n = limits.num_joints
    shape = (a, n + extra_dim) if extra_dim else (a, n)
    assume(not (extra_dim == 0 and a >= 1))
    with pytest.raises(UnsafeCommandError, match=r'prediction: expected \[A >= 1'):
        bound_trajectory(np.zeros(shape), np.zeros(n), 0.1, limits)


@CASES
@given(case_st())
def test_continuous_joints_take_the_short_way(case):
    """A continuous joint never steps more than half a turn from the measured angle."""
    limits, pred, q, times = case
    pos, _ = bound_trajectory(pred, q, times, limits)
    c = limits.continuous
    assert np.all(np.abs(pos[0, c] - q[c]) <= np.pi + 1e-9)


@CASES
@given(
    st.integers(1, 24),
    st.floats(1e-3, 0.5),
    st.integers(0, 10**10),
    st.integers(1, 24),
    st.integers(0, 10**8),
)
def test_retime_window_never_sends_a_point_already_due(horizon, dt, elapsed, action, lead):
    try:
        first, times = retime_window(horizon, dt, elapsed, action, lead)
    except UnsafeCommandError as err:
        assert 'longer than the predicted horizon' in str(err)
        due = np.round((np.arange(horizon) + 1.0) * dt * 1e9).astype(np.int64) - elapsed
        assert np.all(due < lead)
        return
    assert 0 <= first < horizon
    assert 1 <= times.shape[0] <= min(action, horizon - first)
    assert np.all(times >= lead)
    assert np.all(np.diff(times) > 0)


@CASES
@given(
    hnp.arrays(np.float64, 7, elements=st.floats(-20.0, 20.0)),
    hnp.arrays(np.float64, 7, elements=st.floats(-4.0, 4.0)),
    hnp.arrays(np.float64, 7, elements=st.floats(0.0, 6.0)),
    hnp.arrays(np.bool_, 7),
)
def test_measured_angles_map_to_an_equivalent_angle(q, lo, width, continuous):
    hi = lo + width
    out = map_measured_into_range(q, lo, hi, continuous)
    # Same angle modulo 2π on continuous joints, untouched elsewhere.
    turns = (out - q) / (2 * np.pi)
    assert np.allclose(turns[continuous], np.round(turns[continuous]), atol=1e-9)
    assert np.array_equal(out[~continuous], q[~continuous])
    # Inside the range when some equivalent angle is.
    reachable = continuous & (width >= 2 * np.pi)
    r = reachable
    assert np.all((out[r] >= lo[r] - 1e-9) & (out[r] <= hi[r] + 1e-9))


def test_gen3_limits_hold_for_a_wild_prediction():
    """One concrete worst case on the real Gen3 limits: a prediction 100 rad off everywhere."""
    limits = CommandLimits.gen3(velocity_scale=0.5)
    q = np.zeros(J)
    pred = np.full((6, J), 100.0)
    times = (np.arange(6) + 1.0) * 0.1
    pos, vel = bound_trajectory(pred, q, times, limits)
    _check_invariants(limits, q, times, pos, vel)
    step = limits.max_velocity * 0.1
    assert np.all(np.abs(pos[0]) <= step + EPS)  # one full-speed step, no more
    limited = ~limits.continuous
    assert np.allclose(pos[0, limited], step[limited])  # limited joints head for +100 at once


# --------------------------------------------------------------------- acceleration bound


@st.composite
def accel_case_st(draw: st.DrawFn):
    """
    Draw a case with acceleration limits, a start inside the limits and a start velocity.

    Points are evenly spaced after the first, as the planner makes them (the first one is
    closer: latency compensation).
    """
    limits, pred, q, _ = draw(case_st())
    dt = draw(st.floats(1e-3, 0.5))
    first = draw(st.floats(0.02, 1.0)) * dt
    times = first + np.arange(pred.shape[0]) * dt
    n = limits.num_joints
    accel = draw(hnp.arrays(np.float64, n, elements=st.floats(0.5, 50.0)))
    limits = CommandLimits(
        limits.lower, limits.upper, limits.velocity, limits.continuous,
        limits.velocity_scale, acceleration=accel,
    )  # fmt: skip
    frac = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    lo, hi = np.where(limits.continuous, -3.0, limits.lower), np.where(
        limits.continuous, 3.0, limits.upper
    )
    q = lo + frac * (hi - lo)
    v0 = draw(hnp.arrays(np.float64, n, elements=st.floats(-1.0, 1.0))) * limits.max_velocity
    return limits, pred, q, times, v0


def _segment_velocities(q, pos, times):
    dt = np.diff(np.concatenate([[0.0], times]))
    return np.diff(np.vstack([q, pos]), axis=0) / dt[:, None], dt


@CASES
@given(accel_case_st())
def test_acceleration_bound_holds_between_segments(case):
    """
    Check every invariant, and |u_i - u_(i-1)| <= a·τ_i between consecutive segments.

    It holds wherever the start state can still brake before the position limits (else the
    limit wins; docs/safety.md).
    """
    limits, pred, q, times, v0 = case
    pos, vel = bound_trajectory(pred, q, times, limits, v_start=v0)
    _check_invariants(limits, q, times, pos, vel)
    u, dt = _segment_velocities(q, pos, times)
    accel = limits.max_acceleration
    room = np.minimum(limits.upper - q, q - limits.lower)
    assume(np.all(u[0] ** 2 <= 2 * accel * room * 0.5))  # far enough from a limit to brake
    tau = (dt[:-1] + dt[1:]) / 2
    assert np.all(np.abs(np.diff(u, axis=0)) <= accel * tau[:, None] * (1 + 1e-9) + EPS)
    # the last segment can stop at the last point
    assert np.all(np.abs(u[-1]) <= accel * dt[-1] / 2 * (1 + 1e-9) + EPS)


@CASES
@given(accel_case_st())
def test_acceleration_bound_from_the_start_velocity(case):
    """From a start velocity that can still stop within the command, the first step is bounded."""
    limits, pred, q, times, v0 = case
    accel = limits.max_acceleration
    assume(np.all(np.abs(v0) <= accel * times[-1] / 4))  # stoppable well within the command
    room = np.minimum(limits.upper - q, q - limits.lower)
    assume(np.all(v0**2 <= 2 * accel * room * 0.25))  # and well before a limit
    pos, _ = bound_trajectory(pred, q, times, limits, v_start=v0)
    u, dt = _segment_velocities(q, pos, times)
    assert np.all(np.abs(u[0] - v0) <= accel * dt[0] / 2 * (1 + 1e-9) + EPS)


def test_without_acceleration_limits_nothing_changes():
    limits = CommandLimits.gen3(0.5)
    pred = np.linspace(0.0, 0.3, 12)[:, None] * np.ones(J)
    plain = bound_trajectory(pred, np.zeros(J), 0.05, limits)
    with_v0 = bound_trajectory(pred, np.zeros(J), 0.05, limits, v_start=np.ones(J))
    for a, b in zip(plain, with_v0):
        np.testing.assert_array_equal(a, b)
    accel = bound_trajectory(pred, np.zeros(J), 0.05, CommandLimits.gen3(0.5, acceleration=True))
    assert not np.array_equal(plain[0], accel[0])  # the step from rest is limited


def test_bad_acceleration_limits_and_start_velocities_are_refused():
    with pytest.raises(ValueError, match=r'CommandLimits\.acceleration: every acceleration'):
        CommandLimits(
            np.full(2, -1.0), np.ones(2), np.ones(2), np.zeros(2, bool),
            acceleration=np.array([1.0, 0.0]),
        )  # fmt: skip
    limits = CommandLimits.gen3(acceleration=True)
    with pytest.raises(UnsafeCommandError, match='start velocity: expected'):
        bound_trajectory(np.zeros((3, J)), np.zeros(J), 0.1, limits, v_start=np.full(J, np.nan))
