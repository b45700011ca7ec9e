"""Tests of kinova_policy_ros.ros.commands: the messages of a plan and of a prediction."""

from kinova_policy_ros.core import kinematics
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.policy.handover import Plan
from kinova_policy_ros.ros.commands import (
    chain_order,
    command_msg,
    predicted_msg,
    predicted_path_msg,
)
import numpy as np

DT = 0.05
DT_NS = 50_000_000
HORIZON = 12
Q0 = np.zeros(7)


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
