"""Tests of kinova_policy_ros.sim.smoothness: speed dips, jerk, boundary jumps."""

from kinova_policy_ros.sim.smoothness import boundary_jump_p95, jerk_rms, speed_dips
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
