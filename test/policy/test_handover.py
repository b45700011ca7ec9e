"""Tests of kinova_policy_ros.policy.handover: re-timing, hand-over modes and their bounds."""

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import UnsafeCommandError
from kinova_policy_ros.policy.handover import (
    fit_anchored_polynomial,
    HANDOVER_MODES,
    HandoverConfig,
    hermite,
    MIN_LEAD_NS,
    Planner,
    PublishedPlan,
)
from kinova_policy_ros.policy.safety import bound_trajectory, CommandLimits
import numpy as np
import pytest

DT = 0.05
DT_NS = 50_000_000
HORIZON = 12
Q0 = np.zeros(7)
REST = HandoverConfig(mode='rest')


def _limits(scale: float = 0.5, acceleration: bool = False) -> CommandLimits:
    return CommandLimits.gen3(velocity_scale=scale, acceleration=acceleration)


def _creeping(rate: float = 1e-3) -> np.ndarray:
    """Return a prediction that moves every joint ``rate`` rad per step: inside the bounds."""
    return np.tile((np.arange(HORIZON) + 1.0)[:, None] * rate, (1, 7))


def _plan_window(pred, q, elapsed_ns, action_horizon, limits, config=REST):
    """One plan from a fresh planner: observation at 0, command at ``elapsed_ns``."""
    return Planner(limits, DT, action_horizon, config).plan(pred, q, 0, elapsed_ns)


# --------------------------------------------------------------------- re-timing (mode rest)


def test_no_delay_keeps_the_first_points_at_their_due_times():
    plan = _plan_window(_creeping(), Q0, 0, 4, _limits())
    assert plan.first == 0
    assert plan.times_ns.tolist() == [DT_NS, 2 * DT_NS, 3 * DT_NS, 4 * DT_NS]
    np.testing.assert_allclose(plan.positions, _creeping()[:4])
    assert plan.velocities.shape == (4, 7)
    assert np.all(plan.velocities[-1] == 0.0)
    np.testing.assert_allclose(plan.velocities[:-1], 1e-3 / DT)


def test_latency_drops_the_points_already_due_and_shifts_the_window():
    elapsed = 2 * DT_NS + DT_NS // 2  # 2.5 periods
    plan = _plan_window(_creeping(), Q0, elapsed, 4, _limits())
    assert plan.first == 2
    assert plan.times_ns.tolist() == [k * DT_NS - elapsed for k in (3, 4, 5, 6)]
    np.testing.assert_allclose(plan.positions, _creeping()[2:6])


def test_a_point_due_within_the_minimum_lead_is_dropped():
    plan = _plan_window(_creeping(), Q0, DT_NS - MIN_LEAD_NS + 1, 4, _limits())
    assert plan.first == 1
    assert plan.times_ns[0] == DT_NS + MIN_LEAD_NS - 1
    exact = _plan_window(_creeping(), Q0, DT_NS - MIN_LEAD_NS, 4, _limits())
    assert exact.first == 0 and exact.times_ns[0] == MIN_LEAD_NS


def test_the_window_ends_with_the_predicted_horizon():
    plan = _plan_window(_creeping(), Q0, 10 * DT_NS, 4, _limits())
    assert plan.first == 10
    assert plan.times_ns.tolist() == [DT_NS, 2 * DT_NS]
    assert plan.positions.shape == (2, 7)


def test_positions_are_bounded_like_bound_trajectory():
    far = np.full((HORIZON, 7), 1.0)
    limits = _limits(0.1)
    plan = _plan_window(far, Q0, 0, 4, limits)
    want, want_v = bound_trajectory(far[:4], Q0, plan.times_ns * 1e-9, limits)
    np.testing.assert_array_equal(plan.positions, want)
    np.testing.assert_array_equal(plan.velocities, want_v)
    steps = np.abs(np.diff(np.vstack([Q0, plan.positions]), axis=0))
    np.testing.assert_allclose(steps, np.tile(limits.max_velocity * DT, (4, 1)))


def test_non_finite_predictions_and_late_plans_raise():
    bad = _creeping()
    bad[3, 2] = np.nan
    planner = Planner(_limits(), DT, 4, HandoverConfig())
    with pytest.raises(UnsafeCommandError, match='non-finite joint positions'):
        planner.plan(bad, Q0, 0, 0)
    with pytest.raises(UnsafeCommandError, match='longer than the predicted horizon'):
        planner.plan(_creeping(), Q0, 0, HORIZON * DT_NS)
    assert planner.last is None  # nothing published, nothing remembered


# ----------------------------------------------------------------------------- the modes


@pytest.mark.parametrize(
    ('config', 'points'),
    [
        (REST, 4),
        (HandoverConfig(mode='lookahead'), HORIZON),
        (HandoverConfig(mode='lookahead', lookahead_steps=3), 7),
        (HandoverConfig(mode='lookahead', lookahead_steps=0), 4),
        (HandoverConfig(mode='spline'), HORIZON),
        (HandoverConfig(mode='splice', lookahead_steps=100), HORIZON),
    ],
)
def test_lookahead_publishes_points_beyond_the_executed_ones_and_ends_at_rest(config, points):
    plan = _plan_window(_creeping(), Q0, 0, 4, _limits(acceleration=True), config)
    assert plan.positions.shape == (points, 7)
    assert np.all(plan.velocities[-1] == 0.0)
    if points > 4:  # moving at the replacement (after 4 points), not stopping
        assert np.all(plan.velocities[3] > 0.5 * 1e-3 / DT)


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match=r"handover mode: expected one of .* got 'smooth'"):
        HandoverConfig(mode='smooth')
    with pytest.raises(ValueError, match='lookahead_steps: must be >= -1, got -2'):
        HandoverConfig(lookahead_steps=-2)
    with pytest.raises(ValueError, match='splice_steps'):
        HandoverConfig(splice_steps=-1)
    with pytest.raises(ValueError, match='ensemble_decay'):
        HandoverConfig(ensemble_decay=float('nan'))
    with pytest.raises(ValueError, match=r'spline_degree: must be 2\.\.6, got 7'):
        HandoverConfig(spline_degree=7)
    assert set(HANDOVER_MODES) == {'rest', 'lookahead', 'splice', 'ensemble', 'spline'}


def _cruise(planner: Planner, start_ns: int, offset: float) -> np.ndarray:
    """
    Plan a cruise at 0.2 rad/s on every joint, shifted by ``offset`` rad, from ``start_ns``.

    The arm is measured where the running command has it (perfect tracking).
    """
    t = (np.arange(HORIZON) + 1) * DT + start_ns * 1e-9
    pred = np.tile((0.2 * t)[:, None], (1, 7)) + offset
    running = planner.running(start_ns)
    q = Q0 if running is None else running.sample(start_ns)[0]
    return planner.plan(pred, q, start_ns, start_ns).positions


@pytest.mark.parametrize('mode', ['splice', 'spline', 'ensemble'])
def test_a_disagreeing_new_plan_bends_in_gradually(mode):
    """The second plan disagrees by 0.02 rad: the blending modes start on the running command."""
    planner = Planner(_limits(1.0, acceleration=True), DT, 4, HandoverConfig(mode=mode))
    _cruise(planner, 0, 0.0)
    previous = planner.last
    assert previous is not None
    start = 4 * DT_NS
    second = _cruise(planner, start, 0.02)
    on_old = previous.sample(start + DT_NS)[0]
    raw = 0.2 * 5 * DT + 0.02  # the new prediction's first point
    # the first point stays near the running command instead of jumping to the new prediction
    assert np.all(second[0] < raw - 1e-3) and np.all(second[0] > on_old[0] - 1e-3)
    assert planner.last is not None and planner.last.start_ns == start


def test_lookahead_alone_follows_the_new_prediction():
    planner = Planner(_limits(1.0, acceleration=True), DT, 4, HandoverConfig(mode='lookahead'))
    _cruise(planner, 0, 0.0)
    second = _cruise(planner, 4 * DT_NS, 0.02)
    want = 0.2 * (np.arange(6, 11) * DT)[:, None] + 0.02
    np.testing.assert_allclose(second[1:6], np.tile(want, (1, 7)), atol=1e-9)


def test_spline_starts_at_the_running_commands_position_and_velocity():
    planner = Planner(_limits(1.0, acceleration=True), DT, 4, HandoverConfig(mode='spline'))
    _cruise(planner, 0, 0.0)
    previous = planner.last
    assert previous is not None
    start = 4 * DT_NS
    _cruise(planner, start, 0.02)
    new = planner.last
    assert new is not None
    p_old, v_old = previous.sample(start)
    p_new, v_new = new.sample(start)
    np.testing.assert_allclose(p_new, p_old)
    np.testing.assert_allclose(v_new, v_old)  # v_start is the running command's velocity
    # just after the start the velocity changes no faster than the acceleration limit
    _, v_soon = new.sample(start + DT_NS // 10)
    assert np.max(np.abs(v_soon - v_old)) <= 8.6 * DT / 10


def test_continuous_joints_are_blended_the_short_way():
    """The measured joint_1 wraps from +π to -π between plans: no blend through 0."""
    planner = Planner(_limits(1.0, acceleration=True), DT, 4, HandoverConfig(mode='spline'))
    near_pi = np.pi - 0.01
    pred = np.tile(np.linspace(near_pi, near_pi + 0.1, HORIZON)[:, None], (1, 7))
    pred[:, 1] = 0.0  # a limited joint stays put
    q = np.where(kinematics.CONTINUOUS, near_pi - 0.01, 0.0)
    planner.plan(pred, q, 0, 0)
    wrapped = np.where(kinematics.CONTINUOUS, near_pi + 0.04 - 2 * np.pi, 0.0)
    plan = planner.plan(pred + 0.05, wrapped, 4 * DT_NS, 4 * DT_NS)
    cont = kinematics.CONTINUOUS
    # commanded the short way from the wrapped measurement: ~ -π, never through 0
    assert np.all(np.abs(plan.positions[:, cont] - wrapped[cont]) < 0.5)


def test_reset_forgets_the_running_command():
    planner = Planner(_limits(1.0, acceleration=True), DT, 4, HandoverConfig(mode='spline'))
    _cruise(planner, 0, 0.0)
    assert planner.running(DT_NS) is not None
    assert planner.running(HORIZON * DT_NS + 1) is None  # ended at rest
    planner.reset()
    assert planner.last is None and planner.running(DT_NS) is None


# ------------------------------------------------------------------------------ pieces


def test_anchored_polynomial_starts_at_p0_v0_and_fits_a_cubic_exactly():
    t = (np.arange(HORIZON) + 1) * DT
    p0, v0 = np.array([0.1, -0.2]), np.array([0.3, 0.0])
    cubic = p0 + np.outer(t, v0) + np.outer(t**2, [0.5, 1.0]) + np.outer(t**3, [-0.2, 0.4])
    np.testing.assert_allclose(fit_anchored_polynomial(t, cubic, p0, v0, 3), cubic, atol=1e-9)
    noisy = cubic + 0.01 * np.random.default_rng(0).standard_normal(cubic.shape)
    fitted = fit_anchored_polynomial(t, noisy, p0, v0, 3)
    assert np.abs(fitted - cubic).max() < np.abs(noisy - cubic).max()


def test_hermite_meets_its_end_conditions():
    p0, v0, p1, v1 = np.array([0.0]), np.array([1.0]), np.array([2.0]), np.array([-1.0])
    for t, p, v in ((0.0, p0, v0), (1.0, p1, v1)):
        pos, vel = hermite(t, 0.0, 1.0, p0, v0, p1, v1)
        np.testing.assert_allclose(pos, p)
        np.testing.assert_allclose(vel, v)


def test_published_plan_samples_like_the_controller():
    plan = PublishedPlan(
        start_ns=1_000,
        q_start=np.zeros(1),
        v_start=np.array([0.5]),
        times_ns=np.array([100_000_000, 200_000_000], np.int64),
        positions=np.array([[0.1], [0.2]]),
        velocities=np.array([[1.0], [0.0]]),
    )
    assert plan.end_ns == 200_001_000
    np.testing.assert_allclose(plan.sample(0)[1], 0.5)  # before the start: the start state
    np.testing.assert_allclose(plan.sample(1_000 + 100_000_000), ([0.1], [1.0]))
    np.testing.assert_allclose(plan.sample(10**9), ([0.2], [0.0]))  # after the end: at rest
