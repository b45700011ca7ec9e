"""Tests of core.kinematics: Gen3 FK check points, Jacobian, rpy, angle wrapping."""

from kinova_policy_ros.core import kinematics as kin
import numpy as np
import pytest


def _random_q(rng: np.random.Generator, n: int) -> np.ndarray:
    lo = np.where(kin.CONTINUOUS, -np.pi, kin.POSITION_LOWER)
    hi = np.where(kin.CONTINUOUS, np.pi, kin.POSITION_UPPER)
    return rng.uniform(lo, hi, size=(n, 7))


def test_joint_facts():
    assert kin.JOINT_NAMES == tuple(f'joint_{i}' for i in range(1, 8))
    assert kin.CONTINUOUS.dtype == np.bool_
    assert kin.CONTINUOUS.tolist() == [True, False, True, False, True, False, True]
    assert kin.POSITION_LOWER.dtype == np.float64
    np.testing.assert_array_equal(kin.POSITION_UPPER[[1, 3, 5]], [2.24, 2.57, 2.09])
    np.testing.assert_array_equal(kin.POSITION_LOWER[[1, 3, 5]], [-2.24, -2.57, -2.09])
    assert np.isinf(kin.POSITION_LOWER[kin.CONTINUOUS]).all()
    assert (kin.POSITION_UPPER[kin.CONTINUOUS] == np.inf).all()
    np.testing.assert_allclose(kin.VELOCITY_LIMITS[:4], 1.3963)
    np.testing.assert_allclose(kin.VELOCITY_LIMITS[4:], 1.2218)


def test_fk_all_zero_check_point():
    xyz, rpy = kin.fk(np.zeros(7))
    np.testing.assert_allclose(xyz, [0.0, -0.0249, 1.1874], atol=5e-4)
    np.testing.assert_allclose(kin.wrap_to_pi(rpy), 0.0, atol=1e-9)


def test_fk_home_check_point_tool_along_x():
    t = kin.fk_matrix(kin.HOME)
    np.testing.assert_allclose(t[:3, 3], [0.456, 0.002, 0.434], atol=2e-3)
    np.testing.assert_allclose(t[:3, 2], [1.0, 0.0, 0.0], atol=2e-3)  # tool z axis along +x
    np.testing.assert_allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(t[3], [0, 0, 0, 1])


def test_fk_is_batched_and_matches_fk_matrix():
    q = _random_q(np.random.default_rng(0), 12).reshape(3, 4, 7)
    xyz, rpy = kin.fk(q)
    assert xyz.shape == (3, 4, 3) and rpy.shape == (3, 4, 3)
    for idx in np.ndindex(3, 4):
        t = kin.fk_matrix(q[idx])
        np.testing.assert_allclose(xyz[idx], t[:3, 3], atol=1e-12)
        np.testing.assert_allclose(kin.rpy_to_matrix(rpy[idx]), t[:3, :3], atol=1e-9)


def test_tool_point_lies_along_the_end_effector_z_and_is_batched():
    q = _random_q(np.random.default_rng(2), 6).reshape(2, 3, 7)
    np.testing.assert_allclose(kin.tool_point(q, 0.0), kin.fk(q)[0], atol=1e-12)
    frames = kin.joint_frames(q)[..., 7, :, :]
    np.testing.assert_allclose(kin.point_along_z(frames, 0.1), kin.tool_point(q, 0.1), atol=1e-12)
    tcp = kin.tool_point(q, 0.1086)
    assert tcp.shape == (2, 3, 3)
    for idx in np.ndindex(2, 3):
        t = kin.fk_matrix(q[idx])
        np.testing.assert_allclose(tcp[idx], t[:3, 3] + 0.1086 * t[:3, 2], atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(tcp[idx] - t[:3, 3]), 0.1086, atol=1e-12)
    # tool_matrix is the same frame, so FK through it lands on the tool point
    frames = kin.joint_frames(q[0, 0])
    ee_parent = frames[7] @ np.linalg.inv(kin.EE_ORIGIN_MATRIX)
    np.testing.assert_allclose((ee_parent @ kin.tool_matrix(0.1086))[:3, 3], tcp[0, 0], atol=1e-9)


def test_axis_angle_to_matrix_rotates_about_the_axis():
    r = kin.axis_angle_to_matrix([0.0, 0.0, 2.0], np.pi / 2)  # any length
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    axis = np.array([1.0, 2.0, -0.5])
    r = kin.axis_angle_to_matrix(axis, 0.7)
    np.testing.assert_allclose(r @ axis, axis, atol=1e-12)  # the axis stays
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(r), 1.0) and np.isclose(np.trace(r), 1 + 2 * np.cos(0.7))
    with pytest.raises(ValueError, match='nonzero 3-vector'):
        kin.axis_angle_to_matrix([0.0, 0.0, 0.0], 1.0)


def test_fk_rejects_wrong_shape():
    with pytest.raises(ValueError, match='last dimension of 7'):
        kin.fk(np.zeros(6))
    with pytest.raises(ValueError, match='one configuration'):
        kin.fk_matrix(np.zeros((2, 7)))


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    eps = 1e-6
    for q in [*_random_q(rng, 5), kin.HOME]:
        jac = kin.jacobian(q)
        assert jac.shape == (6, 7)
        t0 = kin.fk_matrix(q)
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = eps
            tp, tm = kin.fk_matrix(q + dq), kin.fk_matrix(q - dq)
            lin = (tp[:3, 3] - tm[:3, 3]) / (2 * eps)
            # angular velocity from dR/dq R^T = [w]x
            skew = (tp[:3, :3] - tm[:3, :3]) / (2 * eps) @ t0[:3, :3].T
            ang = np.array([skew[2, 1], skew[0, 2], skew[1, 0]])
            np.testing.assert_allclose(jac[:3, j], lin, atol=1e-7)
            np.testing.assert_allclose(jac[3:, j], ang, atol=1e-7)


def test_rpy_round_trip():
    rng = np.random.default_rng(2)
    lim = np.array([np.pi, np.pi / 2 - 1e-3, np.pi])
    rpy = rng.uniform(-lim, lim, (50, 3))
    back = kin.matrix_to_rpy(kin.rpy_to_matrix(rpy))
    np.testing.assert_allclose(back, rpy, atol=1e-9)
    # any rotation survives matrix -> rpy -> matrix, including the singular pitch = ±π/2
    for pitch in (np.pi / 2, -np.pi / 2):
        r = kin.rpy_to_matrix([0.3, pitch, -0.7])
        np.testing.assert_allclose(kin.rpy_to_matrix(kin.matrix_to_rpy(r)), r, atol=1e-9)


def test_rpy_convention_is_fixed_axis_xyz():
    # pure yaw of 90 degrees maps x to y (ROS / tf2 setRPY)
    r = kin.rpy_to_matrix([0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    # R = Rz(yaw) Ry(pitch) Rx(roll)
    rx = kin.rpy_to_matrix([0.4, 0, 0])
    ry = kin.rpy_to_matrix([0, 0.5, 0])
    rz = kin.rpy_to_matrix([0, 0, 0.6])
    np.testing.assert_allclose(kin.rpy_to_matrix([0.4, 0.5, 0.6]), rz @ ry @ rx, atol=1e-12)


def test_wrap_to_pi():
    a = np.array([0.0, np.pi - 1e-9, np.pi + 0.1, -np.pi - 0.1, 7.0, -7.0])
    w = kin.wrap_to_pi(a)
    assert ((w >= -np.pi) & (w < np.pi)).all()
    np.testing.assert_allclose(np.cos(w), np.cos(a), atol=1e-12)
    np.testing.assert_allclose(np.sin(w), np.sin(a), atol=1e-12)
    np.testing.assert_allclose(w[2], -np.pi + 0.1)


def test_unwrap_continuous_only_touches_continuous_joints():
    t = np.linspace(0, 1, 50)
    true = np.tile(kin.HOME, (50, 1))
    true[:, 2] = np.pi - 0.3 + 0.6 * t  # joint_3 crosses +π
    true[:, 1] = 0.26 + 0.1 * t
    wrapped = true.copy()
    wrapped[:, kin.CONTINUOUS] = kin.wrap_to_pi(wrapped[:, kin.CONTINUOUS])
    assert np.abs(np.diff(wrapped[:, 2])).max() > 6.0  # the jump is there
    out = kin.unwrap_continuous(wrapped)
    np.testing.assert_allclose(out, true, atol=1e-12)
    # a limited joint that jumps (a bad recording) is not "repaired"
    bad = wrapped.copy()
    bad[25:, 1] += 2 * np.pi
    np.testing.assert_array_equal(kin.unwrap_continuous(bad)[:, 1], bad[:, 1])
    with pytest.raises(ValueError, match='continuous mask'):
        kin.unwrap_continuous(np.zeros((4, 6)))


def test_nearest_equivalent():
    ref = kin.HOME.copy()
    q = kin.wrap_to_pi(kin.HOME + 0.05)  # joint_3 wraps to about -π + 0.05
    q[1] = 0.31
    out = kin.nearest_equivalent(q, ref)
    np.testing.assert_allclose(out, kin.HOME + 0.05, atol=1e-12)
    # limited joints are never shifted, even when far from the reference
    q2 = ref.copy()
    q2[1] = ref[1] + 2 * np.pi
    assert kin.nearest_equivalent(q2, ref)[1] == q2[1]
    # broadcasting: a batch against one reference
    batch = np.stack([q, q + 2 * np.pi * kin.CONTINUOUS])
    np.testing.assert_allclose(kin.nearest_equivalent(batch, ref), np.stack([out, out]))
    # custom mask
    mask = np.zeros(7, dtype=bool)
    np.testing.assert_array_equal(kin.nearest_equivalent(q, ref, continuous=mask), q)


def test_limits_helpers():
    assert kin.within_limits(kin.HOME)
    bad = kin.HOME.copy()
    bad[3] = -2.6
    assert not kin.within_limits(bad)
    np.testing.assert_allclose(kin.clip_to_limits(bad)[3], -2.57)
    assert kin.clip_to_limits(np.full(7, 10.0))[0] == 10.0  # continuous joints unclipped
