"""The scripted expert as a node (``sim.ros.expert_node``), callbacks fed directly."""

from collections.abc import Iterator
import json
from typing import Any

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.ros.messages import time_msg
from kinova_policy_ros.sim.env import TCP_OFFSET_2F85, tcp_point
from kinova_policy_ros.sim.ros import sim_node
from kinova_policy_ros.sim.ros.expert_node import ExpertNode
import numpy as np
import pytest
import rclpy
from std_msgs.msg import String

pytestmark = pytest.mark.dds

Q0 = np.array([0.0, 0.26, 3.14, -2.27, 0.0, 0.96, 1.57])


class Sent:
    def __init__(self) -> None:
        self.msgs: list[Any] = []

    def publish(self, msg: Any) -> None:
        self.msgs.append(msg)


@pytest.fixture
def expert() -> Iterator[tuple[ExpertNode, Sent]]:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = ExpertNode(context=context)
    sent = Sent()
    node.pub = sent  # type: ignore[assignment]
    try:
        yield node, sent
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _task(episode: int, stamp_ns: int, target: list[float], seed: int = 3) -> String:
    state = {'seed': seed, 'episode': episode, 'stamp_ns': stamp_ns, 'target': target}
    return String(data=json.dumps(state))


def _joints(stamp_ns: int, q: np.ndarray = Q0) -> Any:
    msg = sim_node.joint_state_msg(stamp_ns, q, np.zeros(7))
    msg.header.stamp = time_msg(stamp_ns)
    return msg


def test_plans_one_reach_per_episode_from_a_later_joint_state(expert):
    node, sent = expert
    target = [0.5, 0.1, 0.05]
    node._on_task(_task(0, 1000, target))
    assert sent.msgs == []  # no joint state yet
    node._on_joints(_joints(900))
    assert sent.msgs == []  # measured before the task state: waits for a newer one
    node._on_joints(_joints(1100))
    assert len(sent.msgs) == 1
    assert node.planned_episode == 0 and node.planned_seed == 3
    node._on_joints(_joints(1200))
    node._on_task(_task(0, 1300, target))
    assert len(sent.msgs) == 1  # the same episode: no new plan
    cmd = sim_node.msg_to_command(sent.msgs[0])
    assert list(cmd.joint_names) == list(kin.JOINT_NAMES) and cmd.stamp_ns == 0
    assert cmd.time_from_start == sorted(cmd.time_from_start)
    assert len(cmd.velocities) == len(cmd.positions) >= 2
    assert cmd.time_from_start[-1] == pytest.approx(node.last_plan.duration, abs=1e-6)
    # the plan ends with the tool centre point on the target, at rest
    end = tcp_point(kin.fk_matrix(np.asarray(cmd.positions[-1])), TCP_OFFSET_2F85)
    assert np.linalg.norm(end - target) < 0.01
    np.testing.assert_allclose(cmd.velocities[-1], 0.0, atol=1e-6)
    # a new episode is planned again, from the latest measured joints
    node._on_task(_task(1, 1400, [0.4, -0.1, 0.05], seed=4))
    assert len(sent.msgs) == 1
    node._on_joints(_joints(1500))
    assert len(sent.msgs) == 2 and node.planned_episode == 1 and node.planned_seed == 4


def test_joint_states_without_every_arm_joint_are_ignored(expert):
    node, sent = expert
    msg = _joints(2000)
    keep = [i for i, n in enumerate(msg.name) if n != 'joint_5']
    msg.name = [msg.name[i] for i in keep]
    msg.position = [msg.position[i] for i in keep]
    node._on_task(_task(0, 1000, [0.5, 0.0, 0.05]))
    node._on_joints(msg)
    assert sent.msgs == [] and node._q is None


def test_topics_are_parameters():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        from rclpy.parameter import Parameter

        node = ExpertNode(
            context=context,
            node_name='expert_b',
            parameter_overrides=[Parameter('command_topic', value='/arm/command')],
        )
        assert node.get_name() == 'expert_b'
        assert node.pub.topic_name == '/arm/command'
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
