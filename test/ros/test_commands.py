"""Tests of kinova_policy_ros.ros.commands: the re-timed, bounded window and its messages."""

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.errors import UnsafeCommandError
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.policy.safety import bound_trajectory, CommandLimits
from kinova_policy_ros.ros.commands import (
    chain_order,
    command_msg,
    MIN_LEAD_NS,
    Plan,
    plan_window,
    predicted_msg,
    predicted_path_msg,
)
import numpy as np
import pytest

DT = 0.05
DT_NS = 50_000_000
HORIZON = 12
Q0 = np.zeros(7)


def _limits(scale: float = 0.5) -> CommandLimits:
    return CommandLimits.gen3(velocity_scale=scale)


def _creeping() -> np.ndarray:
    """Return a prediction that moves every joint 1 mrad per step: well inside the bounds."""
    return np.tile((np.arange(HORIZON) + 1.0)[:, None] * 1e-3, (1, 7))


def test_no_delay_keeps_the_first_points_at_their_due_times():
    plan = plan_window(_creeping(), Q0, DT, 0, 4, _limits())
    assert plan.first == 0
    assert plan.times_ns.tolist() == [DT_NS, 2 * DT_NS, 3 * DT_NS, 4 * DT_NS]
    np.testing.assert_allclose(plan.positions, _creeping()[:4])
    assert plan.velocities.shape == (4, 7)
    assert np.all(plan.velocities[-1] == 0.0)
    np.testing.assert_allclose(plan.velocities[:-1], 1e-3 / DT)


def test_latency_drops_the_points_already_due_and_shifts_the_window():
    elapsed = 2 * DT_NS + DT_NS // 2  # 2.5 periods
    plan = plan_window(_creeping(), Q0, DT, elapsed, 4, _limits())
    assert plan.first == 2
    assert plan.times_ns.tolist() == [k * DT_NS - elapsed for k in (3, 4, 5, 6)]
    np.testing.assert_allclose(plan.positions, _creeping()[2:6])


def test_a_point_due_within_the_minimum_lead_is_dropped():
    plan = plan_window(_creeping(), Q0, DT, DT_NS - MIN_LEAD_NS + 1, 4, _limits())
    assert plan.first == 1
    assert plan.times_ns[0] == DT_NS + MIN_LEAD_NS - 1
    exact = plan_window(_creeping(), Q0, DT, DT_NS - MIN_LEAD_NS, 4, _limits())
    assert exact.first == 0 and exact.times_ns[0] == MIN_LEAD_NS


def test_the_window_ends_with_the_predicted_horizon():
    plan = plan_window(_creeping(), Q0, DT, 10 * DT_NS, 4, _limits())
    assert plan.first == 10
    assert plan.times_ns.tolist() == [DT_NS, 2 * DT_NS]
    assert plan.positions.shape == (2, 7)


def test_positions_are_bounded_like_bound_trajectory():
    far = np.full((HORIZON, 7), 1.0)
    limits = _limits(0.1)
    plan = plan_window(far, Q0, DT, 0, 4, limits)
    want, want_v = bound_trajectory(far[:4], Q0, plan.times_ns * 1e-9, limits)
    np.testing.assert_array_equal(plan.positions, want)
    np.testing.assert_array_equal(plan.velocities, want_v)
    steps = np.abs(np.diff(np.vstack([Q0, plan.positions]), axis=0))
    np.testing.assert_allclose(steps, np.tile(limits.max_velocity * DT, (4, 1)))


def test_non_finite_predictions_and_late_plans_raise():
    bad = _creeping()
    bad[3, 2] = np.nan
    with pytest.raises(UnsafeCommandError, match='non-finite joint positions'):
        plan_window(bad, Q0, DT, 0, 4, _limits())
    with pytest.raises(UnsafeCommandError, match='longer than the predicted horizon'):
        plan_window(_creeping(), Q0, DT, HORIZON * DT_NS, 4, _limits())


def _plan() -> Plan:
    positions = np.arange(14, dtype=np.float64).reshape(2, 7)
    velocities = -positions
    return Plan(0, positions, velocities, np.array([1_250_000_000, 2_000_000_001], np.int64))


def test_command_msg_orders_joints_and_carries_times():
    names = [f'j{i}' for i in (7, 1, 2, 3, 4, 5, 6)]
    index = np.array([6, 0, 1, 2, 3, 4, 5], np.intp)
    msg = command_msg(_plan(), names, index)
    assert list(msg.joint_names) == names
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)  # start on arrival
    assert len(msg.points) == 2
    assert list(msg.points[0].positions) == [6.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(msg.points[1].velocities) == [-13.0, -7.0, -8.0, -9.0, -10.0, -11.0, -12.0]
    first, second = (p.time_from_start for p in msg.points)
    assert (first.sec, first.nanosec) == (1, 250_000_000)
    assert stamp_to_ns(second) == 2_000_000_001


def test_predicted_msg_is_stamped_and_timed_per_period():
    pred = np.arange(3 * 7, dtype=np.float64).reshape(3, 7)
    index = np.array([1, 0, 2, 3, 4, 5, 6], np.intp)
    msg = predicted_msg(pred, 5_000_000_123, DT, ['b', 'a', 'c', 'd', 'e', 'f', 'g'], index)
    assert stamp_to_ns(msg.header.stamp) == 5_000_000_123
    assert list(msg.joint_names) == ['b', 'a', 'c', 'd', 'e', 'f', 'g']
    assert [stamp_to_ns(p.time_from_start) for p in msg.points] == [DT_NS, 2 * DT_NS, 3 * DT_NS]
    assert list(msg.points[2].positions) == [15.0, 14.0, 16.0, 17.0, 18.0, 19.0, 20.0]
    assert all(len(p.velocities) == 0 for p in msg.points)


def test_predicted_path_is_forward_kinematics_of_each_predicted_point():
    pred = kinematics.HOME + np.linspace(0.0, 0.3, 5)[:, None] * np.array([1, -1, 1, 1, -1, 1, 1])
    msg = predicted_path_msg(pred, 10 * DT_NS, DT, 'base_link')
    assert msg.header.frame_id == 'base_link' and stamp_to_ns(msg.header.stamp) == 10 * DT_NS
    assert len(msg.poses) == 5
    for i, pose in enumerate(msg.poses):
        assert pose.header.frame_id == 'base_link'
        assert stamp_to_ns(pose.header.stamp) == (10 + i + 1) * DT_NS
        want = kinematics.fk_matrix(pred[i])
        p, o = pose.pose.position, pose.pose.orientation
        np.testing.assert_allclose([p.x, p.y, p.z], want[:3, 3], atol=1e-12)
        quat = kinematics.matrix_to_quaternion(want[:3, :3])
        # the same rotation (q and -q are one rotation)
        assert abs(abs(np.dot([o.x, o.y, o.z, o.w], quat)) - 1.0) < 1e-9
    # the poses move: the path is not one point repeated
    first, last = msg.poses[0].pose.position, msg.poses[-1].pose.position
    assert np.hypot(first.x - last.x, first.y - last.y) > 0.01


def test_chain_order_finds_the_arm_joints_by_name():
    names = [f'joint_{i}' for i in range(1, 8)]
    assert chain_order(names).tolist() == list(range(7))
    shuffled = ['joint_3', 'joint_1', 'joint_2', 'joint_7', 'joint_5', 'joint_6', 'joint_4']
    order = chain_order(shuffled)
    assert [shuffled[i] for i in order] == names
    assert chain_order([f'left_{n}' for n in names]).tolist() == list(range(7))  # a prefix
    assert chain_order([f'a{i}' for i in range(7)]).tolist() == list(range(7))  # other names
    assert chain_order(names[:6]) is None  # not a 7-joint arm: no forward kinematics
