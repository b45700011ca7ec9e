"""The command-invariant check flags each violation of docs/safety.md and passes safe commands."""

from types import SimpleNamespace

from kinova_policy_ros.policy.safety import bound_trajectory, CommandLimits
from kinova_policy_ros.testing.invariants import command_violations, MIN_LEAD_NS
import numpy as np
import pytest

NAMES = [f'joint_{i}' for i in range(1, 8)]
LIMITS = CommandLimits.gen3(velocity_scale=0.5)
Q_MEAS = np.array([0.1, 0.3, -3.0, -2.2, 0.05, 0.9, 1.5])
DT = 0.05


def _msg(q: np.ndarray, v: np.ndarray, t_ns: list[int], names=NAMES) -> SimpleNamespace:
    points = [
        SimpleNamespace(
            positions=list(map(float, qi)),
            velocities=list(map(float, vi)),
            time_from_start=SimpleNamespace(sec=int(ti // 10**9), nanosec=int(ti % 10**9)),
        )
        for qi, vi, ti in zip(q, v, t_ns)
    ]
    return SimpleNamespace(joint_names=list(names), points=points)


def _safe() -> tuple[np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    pred = Q_MEAS + rng.uniform(-1.0, 1.0, (4, 7))
    t = [round((i + 1) * DT * 1e9) for i in range(4)]
    q, v = bound_trajectory(pred, Q_MEAS, np.array(t) * 1e-9, LIMITS)
    return q, v, t


def _rules(msg, measured=Q_MEAS) -> list[str]:
    return [v.rule for v in command_violations(msg, NAMES, LIMITS, measured)]


def test_a_bounded_command_has_no_violation():
    q, v, t = _safe()
    assert command_violations(_msg(q, v, t), NAMES, LIMITS, Q_MEAS) == []
    assert command_violations(_msg(q, v, t), NAMES, LIMITS) == []
    # The bound binds (the prediction wanted to move faster): the check is not vacuous.
    steps = np.abs(np.diff(np.vstack([Q_MEAS, q]), axis=0))
    assert np.isclose(steps, LIMITS.max_velocity * DT, rtol=1e-6).any()


def test_wrong_names_order_or_count():
    q, v, t = _safe()
    assert _rules(_msg(q, v, t, names=NAMES[::-1])) == ['names']
    assert _rules(_msg(q, v, t, names=NAMES[:6])) == ['names']
    found = command_violations(_msg(q, v, t, names=NAMES[:6]), NAMES, LIMITS)
    assert 'joint_7' in found[0].detail and str(found[0]).startswith('names: ')


def test_no_point_or_a_point_of_the_wrong_length():
    q, v, t = _safe()
    assert _rules(_msg(q[:0], v[:0], [])) == ['shape']
    msg = _msg(q, v, t)
    msg.points[2].velocities = msg.points[2].velocities[:6]
    found = command_violations(msg, NAMES, LIMITS)
    assert [f.rule for f in found] == ['shape'] and 'points [2]' in found[0].detail


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize('field', ['q', 'v'])
def test_non_finite_position_or_velocity(bad: float, field: str):
    q, v, t = _safe()
    (q if field == 'q' else v)[1, 3] = bad
    assert _rules(_msg(q, v, t)) == ['finite']


def test_position_outside_the_limits():
    q, v, t = _safe()
    q[-1, 1] = LIMITS.upper[1] + 0.01  # joint_2 is limited
    found = command_violations(_msg(q, v, t), NAMES, LIMITS, Q_MEAS)
    assert found[0].rule == 'limits' and 'point 3 joint 1' in found[0].detail
    # A continuous joint has no position limit.
    q, v, t = _safe()
    q[:, 0] += 100.0
    assert 'limits' not in _rules(_msg(q, v, t), measured=None)


def test_too_fast_between_points_and_from_the_measured_position():
    q, v, t = _safe()
    q[2, 4] = q[1, 4] + 2 * LIMITS.max_velocity[4] * DT  # joint_5 jumps between points 1 and 2
    found = command_violations(_msg(q, v, t), NAMES, LIMITS)
    assert [f.rule for f in found] == ['speed'] and 'point 2 joint 4' in found[0].detail
    q, v, t = _safe()
    q += 0.2  # every point shifted: consecutive steps unchanged, the first one too far
    q[:, 1] = np.clip(q[:, 1], LIMITS.lower[1], LIMITS.upper[1])
    assert _rules(_msg(q, v, t), measured=None) == []
    found = command_violations(_msg(q, v, t), NAMES, LIMITS, Q_MEAS)
    assert [f.rule for f in found] == ['speed'] and 'measured position' in found[0].detail


def test_the_measured_position_is_clamped_to_the_limits_first():
    q, v, t = _safe()
    outside = Q_MEAS.copy()
    outside[1] = 50.0  # joint_2 measured far beyond its limit: the first step is from the limit
    q, v = bound_trajectory(q, outside, np.array(t) * 1e-9, LIMITS)
    assert command_violations(_msg(q, v, t), NAMES, LIMITS, outside) == []


def test_velocity_beyond_the_bound_and_last_point_not_at_rest():
    q, v, t = _safe()
    v[0, 2] = LIMITS.max_velocity[2] * 1.01
    assert _rules(_msg(q, v, t)) == ['velocity']
    q, v, t = _safe()
    v[-1, 6] = 0.01
    assert _rules(_msg(q, v, t)) == ['rest']


def test_times_not_strictly_increasing_or_first_point_due():
    q, v, t = _safe()
    t_equal = [t[0], t[1], t[1], t[3]]
    assert _rules(_msg(q, v, t_equal)) == ['time']
    t_back = [t[0], t[2], t[1], t[3]]
    assert _rules(_msg(q, v, t_back)) == ['time']
    t_due = [MIN_LEAD_NS - 1, *t[1:]]
    found = command_violations(_msg(q, v, t_due), NAMES, LIMITS)
    assert [f.rule for f in found] == ['time'] and str(MIN_LEAD_NS) in found[0].detail
