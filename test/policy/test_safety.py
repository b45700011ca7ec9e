"""Tests of kinova_policy_ros.policy.safety: command bounding invariants on random inputs."""

from typing import Any

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import KinovaPolicyError
from kinova_policy_ros.policy.safety import (
    bound_trajectory,
    CommandLimits,
    map_measured_into_range,
    point_times,
    retime_window,
    UnsafeCommandError,
)
import numpy as np
import pytest

GEN3 = CommandLimits.gen3()
TOL = 1e-9


def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random prediction [A, 7], measured position inside the limits, point times."""
    num = int(rng.integers(1, 13))
    q_meas = kinematics.wrap_to_pi(rng.uniform(-np.pi, np.pi, 7))
    q_meas = np.clip(q_meas, GEN3.lower, GEN3.upper)
    pred = q_meas + rng.normal(0.0, rng.choice([0.01, 0.3, 3.0]), (num, 7))
    # Continuous joints predicted in any 2π branch (e.g. the training range around π).
    pred[:, GEN3.continuous] += 2 * np.pi * rng.integers(-2, 3, (num, 4))
    steps = rng.uniform(0.005, 0.2, num)
    return pred, q_meas, np.cumsum(steps)


def test_gen3_limits_match_kinematics():
    assert np.array_equal(
        GEN3.lower[~GEN3.continuous], kinematics.POSITION_LOWER[~GEN3.continuous]
    )
    assert np.array_equal(GEN3.velocity, kinematics.VELOCITY_LIMITS)
    assert GEN3.continuous.tolist() == [True, False, True, False, True, False, True]
    assert np.all(np.isinf(GEN3.upper[GEN3.continuous]))
    assert GEN3.names == kinematics.JOINT_NAMES


@pytest.mark.parametrize('seed', range(40))
def test_random_predictions_obey_every_invariant(seed):
    rng = np.random.default_rng(seed)
    scale = float(rng.uniform(0.05, 1.0))
    limits = CommandLimits.gen3(velocity_scale=scale)
    pred, q_meas, times = _random_case(rng)
    pos, vel = bound_trajectory(pred, q_meas, times, limits)
    assert pos.shape == pred.shape and vel.shape == pred.shape
    assert np.all(np.isfinite(pos)) and np.all(np.isfinite(vel))
    assert np.all(pos >= limits.lower - TOL) and np.all(pos <= limits.upper + TOL)
    steps = np.diff(np.concatenate([[0.0], times]))
    dq = np.diff(np.vstack([q_meas, pos]), axis=0)
    assert np.all(np.abs(dq) <= limits.max_velocity * steps[:, None] + TOL)
    assert np.all(np.abs(vel) <= limits.max_velocity + TOL)
    assert np.all(vel[-1] == 0.0)
    # Continuous joints: each step is the shortest way (never more than π).
    assert np.all(np.abs(dq[:, limits.continuous]) <= np.pi + TOL)


@pytest.mark.parametrize('seed', range(10))
def test_reachable_prediction_passes_unchanged(seed):
    rng = np.random.default_rng(100 + seed)
    q_meas = np.clip(rng.uniform(-2.0, 2.0, 7), GEN3.lower + 0.2, GEN3.upper - 0.2)
    dt = 0.1
    # Small steps, well inside the velocity bound.
    pred = q_meas + np.cumsum(rng.uniform(-0.05, 0.05, (6, 7)), axis=0)
    pos, vel = bound_trajectory(pred, q_meas, dt, GEN3)
    np.testing.assert_allclose(pos, pred, atol=1e-12)
    # Interior velocities are central differences.
    np.testing.assert_allclose(vel[0], (pos[1] - q_meas) / (2 * dt), atol=1e-12)
    np.testing.assert_allclose(vel[2], (pos[3] - pos[1]) / (2 * dt), atol=1e-12)


def test_continuous_joint_takes_the_shortest_way_across_pi():
    q_meas = np.zeros(7)
    q_meas[2] = -3.10  # driver-wrapped angle near -π
    pred = np.tile(q_meas, (3, 1))
    pred[:, 2] = [3.16, 3.17, 3.18]  # the model thinks in the trained branch around +π
    pos, _ = bound_trajectory(pred, q_meas, 0.1, GEN3)
    np.testing.assert_allclose(pos[:, 2], np.array([3.16, 3.17, 3.18]) - 2 * np.pi, atol=1e-12)


def test_limited_joint_is_clamped_and_velocity_bounded():
    q_meas = np.zeros(7)
    q_meas[1] = 2.20
    pred = np.tile(q_meas, (4, 1))
    pred[:, 1] = 5.0  # far beyond joint_2's upper limit 2.24
    pred[:, 3] = -1.0  # a big jump on joint_4
    dt = 0.01
    pos, _ = bound_trajectory(pred, q_meas, dt, GEN3)
    assert np.all(pos[:, 1] <= 2.24)
    np.testing.assert_allclose(pos[:, 1], [2.2 + 1.3963 * dt, 2.2 + 2 * 1.3963 * dt, 2.24, 2.24])
    np.testing.assert_allclose(pos[:, 3], -1.3963 * dt * np.arange(1, 5))


def test_measured_outside_limits_still_yields_positions_inside():
    q_meas = np.zeros(7)
    q_meas[5] = 2.5  # beyond joint_6's limit 2.09
    pos, vel = bound_trajectory(np.tile(q_meas, (3, 1)), q_meas, 0.1, GEN3)
    assert np.all(pos[:, 5] == 2.09)
    assert np.all(np.isfinite(vel))


@pytest.mark.parametrize(
    ('pred_value', 'q_value', 'what'),
    [(np.nan, 0.0, 'prediction'), (np.inf, 0.0, 'prediction'), (0.0, np.nan, 'measured')],
)
def test_non_finite_input_raises_and_names_the_joint(pred_value, q_value, what):
    pred = np.zeros((3, 7))
    q = np.zeros(7)
    pred[1, 4] = pred_value
    q[4] = q_value
    with pytest.raises(UnsafeCommandError, match=f'{what}.*joint_5'):
        bound_trajectory(pred, q, 0.1, GEN3)


def test_bad_shapes_and_times_raise():
    with pytest.raises(UnsafeCommandError, match=r'expected \[A >= 1, 7\]'):
        bound_trajectory(np.zeros((3, 6)), np.zeros(7), 0.1, GEN3)
    with pytest.raises(UnsafeCommandError, match='measured position: expected'):
        bound_trajectory(np.zeros((3, 7)), np.zeros(6), 0.1, GEN3)
    with pytest.raises(UnsafeCommandError, match='strictly increasing'):
        bound_trajectory(np.zeros((3, 7)), np.zeros(7), [0.1, 0.1, 0.2], GEN3)
    with pytest.raises(UnsafeCommandError, match='strictly increasing'):
        bound_trajectory(np.zeros((2, 7)), np.zeros(7), -0.1, GEN3)
    assert issubclass(UnsafeCommandError, KinovaPolicyError)


def test_point_times():
    np.testing.assert_allclose(point_times(3, 0.1), [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'velocity_scale': 0.0}, 'velocity_scale'),
        ({'velocity_scale': 1.5}, 'velocity_scale'),
        ({'velocity': np.zeros(7)}, 'velocity'),
        ({'velocity': np.ones(6)}, r'CommandLimits.velocity: expected \[7\]'),
        ({'lower': np.full(7, -np.inf)}, 'CommandLimits.lower: joints'),
        ({'upper': np.full(7, -3.0)}, 'lower must be < upper'),
        ({'continuous': [True] * 6}, 'CommandLimits.continuous'),
    ],
)
def test_limits_validation_names_the_field(kwargs, match):
    base: dict[str, Any] = {
        'lower': kinematics.POSITION_LOWER,
        'upper': kinematics.POSITION_UPPER,
        'velocity': kinematics.VELOCITY_LIMITS,
        'continuous': kinematics.CONTINUOUS,
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        CommandLimits(**base)


def test_limits_are_read_only():
    with pytest.raises(ValueError, match='read-only'):
        GEN3.lower[1] = 0.0


def test_map_measured_into_range():
    q_min = np.array([-1.0, -1.0, 2.9, -1.0, -4.0, -1.0, -3.5])
    q_max = np.array([1.0, 1.0, 3.5, 1.0, 4.0, 1.0, -3.4])
    q = np.array([0.5, 0.5, -3.1, 0.5, 3.0, 3.0, 3.0])
    out = map_measured_into_range(q, q_min, q_max, kinematics.CONTINUOUS)
    assert out[0] == 0.5  # inside already
    assert out[1] == 0.5  # not continuous
    assert out[2] == pytest.approx(-3.1 + 2 * np.pi)  # into the trained branch around π
    assert out[4] == 3.0  # inside a wide range: unchanged
    assert out[5] == 3.0  # not continuous: never moved, even outside the range
    assert out[6] == pytest.approx(3.0 - 2 * np.pi)  # -3.28 is 0.12 from [-3.5, -3.4]
    q_nan = q.copy()
    q_nan[2] = np.nan
    assert np.isnan(map_measured_into_range(q_nan, q_min, q_max, kinematics.CONTINUOUS)[2])


@pytest.mark.parametrize('seed', range(20))
def test_map_measured_into_range_is_equivalent_and_in_range(seed):
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-6.0, 6.0, 7)
    hi = lo + rng.uniform(0.0, 1.0, 7)
    q = rng.uniform(-np.pi, np.pi, 7)
    out = map_measured_into_range(q, lo, hi, kinematics.CONTINUOUS)
    cont = kinematics.CONTINUOUS
    k = (out - q) / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)  # same angle
    assert np.array_equal(out[~cont], q[~cont])
    # Distance to the range is never worse than any other branch.
    for j in np.flatnonzero(cont):
        branches = q[j] + 2 * np.pi * np.arange(-4, 5)
        dist = np.maximum(lo[j] - branches, 0) + np.maximum(branches - hi[j], 0)
        got = max(lo[j] - out[j], 0) + max(out[j] - hi[j], 0)
        assert got <= dist.min() + 1e-9


def test_retime_window_keeps_points_when_the_model_is_fast():
    first, times = retime_window(12, 0.1, 20_000_000, 6, 1_000_000)
    assert first == 0
    assert times.tolist() == [80_000_000 + 100_000_000 * i for i in range(6)]


def test_retime_window_drops_points_already_due_and_slides_into_the_horizon():
    # 0.25 s of inference: points due at 0.1 and 0.2 s are gone; six points from index 2.
    first, times = retime_window(12, 0.1, 250_000_000, 6, 1_000_000)
    assert first == 2
    assert times.tolist() == [50_000_000 + 100_000_000 * i for i in range(6)]
    # Near the end of the horizon fewer points remain.
    first, times = retime_window(12, 0.1, 1_000_000_000, 6, 1_000_000)
    assert first == 10 and times.tolist() == [100_000_000, 200_000_000]
    # A point due in less than the minimum lead is dropped too.
    first, _ = retime_window(12, 0.1, 99_500_000, 6, 1_000_000)
    assert first == 1


def test_retime_window_raises_when_everything_is_due():
    with pytest.raises(UnsafeCommandError, match='longer than the predicted horizon'):
        retime_window(4, 0.1, 400_000_000, 2, 1_000_000)
