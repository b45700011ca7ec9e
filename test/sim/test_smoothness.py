"""Tests of kinova_policy_ros.sim.smoothness: speed dips, jerk, boundary jumps."""

from kinova_policy_ros.sim.smoothness import (
    boundary_jump_p95,
    commanded_velocity,
    handover_dips,
    jerk_rms,
    prediction_end_s,
    speed_dips,
)
import numpy as np
import pytest

T = np.arange(0.0, 4.0, 0.01)  # 100 Hz for 4 s
FAR = np.full(T.size, 0.3)  # 30 cm from the target all along


def _speed(profile: np.ndarray) -> np.ndarray:
    """Return joint velocities [N, 7] whose norm is ``profile`` (all along joint 1)."""
    dq = np.zeros((profile.size, 7))
    dq[:, 0] = profile
    return dq


def test_stop_and_go_counts_one_dip_per_stop():
    # cruise at 0.4 rad/s, slowing to 0 at 1 s, 2 s and 3 s (plans that end at rest)
    profile = 0.4 * np.minimum(1.0, np.abs(((T + 0.5) % 1.0) - 0.5) * 8)
    assert speed_dips(T, _speed(profile), FAR) == 3


def test_a_steady_reach_has_no_dips_even_at_its_start_and_end():
    profile = 0.4 * np.sin(np.pi * T / T[-1])  # accelerate, cruise, decelerate once
    assert speed_dips(T, _speed(profile), FAR) == 0


def test_dips_near_the_target_or_at_rest_do_not_count():
    profile = 0.4 * np.minimum(1.0, np.abs(((T + 0.5) % 1.0) - 0.5) * 8)
    assert speed_dips(T, _speed(profile), np.full(T.size, 0.02)) == 0  # within 5 cm
    assert speed_dips(T, _speed(0.01 * profile), FAR) == 0  # below min_speed: standing
    near_later = np.where(T < 1.5, 0.3, 0.02)
    assert speed_dips(T, _speed(profile), near_later) == 1  # only the dip at 1 s


STOP_AND_GO = 0.4 * np.minimum(1.0, np.abs(((T + 0.5) % 1.0) - 0.5) * 8)  # stops at 1, 2, 3 s


def test_dips_the_plans_asked_for_are_not_hand_over_dips():
    # the arm follows its plans exactly, and the plans themselves slow down mid-prediction
    dq = _speed(STOP_AND_GO)
    in_prediction = np.ones(T.size, dtype=bool)
    assert speed_dips(T, dq, FAR) == 3
    assert handover_dips(T, dq, FAR, dq, in_prediction) == 0


def test_a_lagging_arm_or_a_late_plan_makes_hand_over_dips():
    dq = _speed(STOP_AND_GO)
    cruise = _speed(np.full(T.size, 0.4))
    # the plans command cruise speed all along: every dip is the arm's, not the plans'
    assert handover_dips(T, dq, FAR, cruise, np.ones(T.size, dtype=bool)) == 3
    # the plans slow down too, but at 2 s the arm is past the prediction (ramp to rest)
    late = np.abs(T - 2.0) > 0.2
    assert handover_dips(T, dq, FAR, dq, late) == 1


def test_commanded_velocity_follows_the_latest_plan_and_marks_its_ramp_to_rest():
    tfs = [0.1, 0.2, 0.3, 0.4]  # the last point is the rest at the end
    plan_a = (0.0, tfs, [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    plan_b = (0.5, tfs, [[0.0, 2.0], [0.0, 2.0], [0.0, 2.0], [0.0, 0.0]])
    t = np.array([-0.1, 0.05, 0.25, 0.35, 0.45, 0.6, 0.75, 1.0])
    dq, pred = commanded_velocity(t, [plan_a, plan_b])
    # a plan starts from the commanded velocity (0 at first) and reaches its first point
    np.testing.assert_allclose(dq[:, 0], [0.0, 0.5, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(dq[:, 1], [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0])
    # before any plan, and past the second-to-last point (0.3 s) of the running plan: not
    assert pred.tolist() == [False, True, True, False, False, True, True, False]
    assert prediction_end_s(tfs) == 0.3 and prediction_end_s([0.5]) == 0.5
    # replaced at 0.2 s while plan a commands 1.0 rad/s: plan b starts from there
    dq, _ = commanded_velocity(np.array([0.2, 0.25, 0.3]), [plan_a, (0.2, *plan_b[1:])])
    np.testing.assert_allclose(dq, [[1.0, 0.0], [0.5, 1.0], [0.0, 2.0]], atol=1e-12)


def test_jerk_of_a_constant_acceleration_is_zero_and_of_a_sine_is_its_amplitude():
    assert jerk_rms(T, _speed(2.0 * T)) == pytest.approx(0.0, abs=1e-6)
    w = 2 * np.pi
    sine = jerk_rms(T, _speed(np.sin(w * T)))
    # d²/dt² sin(wt) = -w² sin(wt): RMS over joints (1 of 7 moving) = w² / sqrt(2 * 7)
    assert sine == pytest.approx(w**2 / np.sqrt(14), rel=0.05)
    assert jerk_rms(T[:3], _speed(T[:3])) is None


def test_boundary_jump_p95():
    assert boundary_jump_p95([]) is None
    assert boundary_jump_p95([0.0] * 19 + [1.0]) == pytest.approx(0.05)
