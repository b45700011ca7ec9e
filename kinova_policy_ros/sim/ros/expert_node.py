"""
``sim_expert``: the scripted expert as a ROS 2 node, commanding the simulator like a policy would.

Reads the target from the simulator's ``~/task_state`` (JSON) and the measured joint positions
from ``/joint_states`` (mapped by name). For every new episode (a new ``episode`` counter in the
task state) it plans a reach from the measured state (``expert.plan_reach``) and publishes it as
one multi-point ``trajectory_msgs/JointTrajectory`` with positions and velocities, stamp 0.
"""

import json
import sys
from typing import Any

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.ros.messages import now_ns
from kinova_policy_ros.sim.expert import ExpertConfig, JointPlan, plan_reach
from kinova_policy_ros.sim.ros import sim_node
from kinova_policy_ros.sim.ros.node_runner import run_node
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory


class ExpertNode(Node):
    """Plans and commands one reach per simulator episode."""

    def __init__(self, expert: ExpertConfig | None = None, **kwargs: Any) -> None:
        super().__init__(kwargs.pop('node_name', 'sim_expert'), **kwargs)
        self.declare_parameter('joint_states_topic', sim_node.DEFAULT_TOPICS['joint_states'])
        self.declare_parameter('task_state_topic', sim_node.DEFAULT_TOPICS['task_state'])
        self.declare_parameter('command_topic', sim_node.DEFAULT_TOPICS['command'])
        self.expert = expert or ExpertConfig()
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(
            JointTrajectory, str(self.get_parameter('command_topic').value), reliable
        )
        self.create_subscription(
            JointState,
            str(self.get_parameter('joint_states_topic').value),
            self._on_joints,
            reliable,
        )
        self.create_subscription(
            String, str(self.get_parameter('task_state_topic').value), self._on_task, reliable
        )
        self._q: np.ndarray | None = None
        self._q_stamp = 0
        self._task: dict[str, Any] | None = None
        self.planned_seed: int | None = None
        self.planned_episode: int | None = None
        self.last_plan: JointPlan | None = None
        self.last_plan_stamp_ns = 0

    def _on_joints(self, msg: JointState) -> None:
        index = {n: i for i, n in enumerate(msg.name)}
        if not all(n in index for n in kin.JOINT_NAMES):
            return
        self._q = np.array([msg.position[index[n]] for n in kin.JOINT_NAMES])
        self._q_stamp = stamp_to_ns(msg.header.stamp)
        self._maybe_plan()

    def _on_task(self, msg: String) -> None:
        self._task = json.loads(msg.data)
        self._maybe_plan()

    def _maybe_plan(self) -> None:
        task = self._task
        if task is None or self._q is None:
            return
        key = int(task.get('episode', task['seed']))
        if key == self.planned_episode:
            return
        if self._q_stamp <= int(task['stamp_ns']):
            return  # wait for a joint state measured after this task state
        plan = plan_reach(self._q, np.asarray(task['target']), self.expert)
        self.pub.publish(sim_node.plan_to_msg(plan))
        self.planned_seed = int(task['seed'])
        self.planned_episode = key
        self.last_plan = plan
        self.last_plan_stamp_ns = now_ns(self)
        self.get_logger().info(
            f'seed {task["seed"]}: commanded a {plan.duration:.2f} s reach with '
            f'{len(plan.times)} points'
        )


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``sim_expert`` console script; 1 on a bad parameter."""
    return run_node(ExpertNode, 'sim_expert', args)


if __name__ == '__main__':
    sys.exit(main())
