"""
``sim_node`` in this process (no DDS traffic): a replacement trajectory on the physics clock.

The node steps physics in whole 2 ms steps up to its clock and samples the trajectory follower
at the physics time. A trajectory that arrives between two steps must start at the physics time
the next step samples, not at the node clock's (up to one step later): a start after that time
makes the next step fall *before* the trajectory, where the controller holds still with zero
velocity — a one-step loss of the velocity feed-forward that showed as a speed dip at every
replacement over DDS.
"""

from collections.abc import Iterator
import time

from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.ros.messages import duration_msg
from kinova_policy_ros.sim.ros.sim_node import SimNode
import numpy as np
import numpy.typing as npt
import pytest
import rclpy
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

VELOCITY = np.array([0.5, -0.3, 0.0, 0.4, 0.0, 0.0, 0.0])  # rad/s
DT = 0.066


def _trajectory(q: npt.NDArray[np.float64], points: int = 12) -> JointTrajectory:
    """Constant velocity from ``q``, ending at rest (as the controller requires)."""
    msg = JointTrajectory(joint_names=list(kin.JOINT_NAMES))
    for k in range(1, points + 1):
        velocity = np.zeros(7) if k == points else VELOCITY
        msg.points.append(
            JointTrajectoryPoint(
                positions=[float(v) for v in q + VELOCITY * k * DT],
                velocities=[float(v) for v in velocity],
                time_from_start=duration_msg(k * DT),
            )
        )
    return msg


@pytest.fixture
def node() -> Iterator[SimNode]:
    context = rclpy.Context()
    rclpy.init(context=context)
    sim = SimNode(context=context)  # no executor: the test calls the callbacks
    try:
        yield sim
    finally:
        sim.destroy_node()
        rclpy.try_shutdown(context=context)


def _run_for(node: SimNode, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.003)
        node._advance()


def test_a_replacement_starts_where_the_next_physics_step_samples(node: SimNode):
    node._advance()
    node._on_command(_trajectory(node.sim.joint_positions()))  # as reported, as a node sends
    for _ in range(3):
        _run_for(node, 0.2)  # at cruise speed
        running = node.follower.sample(node._physics_ns())
        assert running is not None
        time.sleep(0.0011)  # arrive between two physics steps
        node._on_command(_trajectory(running[0]))
        next_step_ns = node._physics_ns()  # what the next step samples
        active = node.follower.active
        assert active is not None
        assert active.start_ns == next_step_ns
        # The next step continues from the measured state at arrival, at its velocity
        # (interpolate_from_desired_state false): not held still.
        desired = node.follower.sample(next_step_ns)
        assert desired is not None
        np.testing.assert_allclose(desired[1], node.sim.joint_velocities())
        assert np.linalg.norm(desired[1]) > 0.5 * np.linalg.norm(VELOCITY)
        np.testing.assert_allclose(desired[0], node.sim.joint_positions())  # as reported
