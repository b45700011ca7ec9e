"""
launch_testing test of ``launch/policy.launch.py`` (collected only where launch_testing exists).

It includes the launch file with a small random checkpoint, plays camera and robot from the
test (RGB, depth, shuffled ``/joint_states``), asserts that trajectories arrive on the
controller topic and that every process exits with code 0.
"""

from pathlib import Path
import tempfile
import time
import unittest

from kinova_policy_ros.core import image_codec
from kinova_policy_ros.testing.synthetic import make_random_checkpoint
import numpy as np
import pytest
import rclpy
import rclpy.executors
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

# Collected only where launch_testing (and so launch) is installed; skipped elsewhere.
launch_testing = pytest.importorskip('launch_testing')
launch = pytest.importorskip('launch')
launch_actions = pytest.importorskip('launch.actions')
launch_sources = pytest.importorskip('launch.launch_description_sources')
launch_testing_actions = pytest.importorskip('launch_testing.actions')
launch_testing_asserts = pytest.importorskip('launch_testing.asserts')

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TOPIC = '/joint_trajectory_controller/joint_trajectory'
JOINTS = [f'joint_{i}' for i in range(1, 8)]


@pytest.mark.launch_test
def generate_test_description() -> tuple[object, dict[str, object]]:
    out = Path(tempfile.mkdtemp(prefix='policy_launch_'))
    ckpt = make_random_checkpoint(
        out / 'ckpt',
        image_hw=(24, 32),
        dt=0.05,
        d_model=32,
        dim_feedforward=64,
        conv_channels=(8, 16),
        img_feat_dim=16,
        q_feat_dim=16,
    )
    policy = launch_actions.IncludeLaunchDescription(
        launch_sources.PythonLaunchDescriptionSource(str(ROOT / 'launch' / 'policy.launch.py')),
        launch_arguments={
            'checkpoint': str(ckpt),
            'params_file': str(ROOT / 'config' / 'policy.yaml'),
            'device': 'cpu',
            'enabled_on_start': 'true',
        }.items(),
    )
    return launch.LaunchDescription([policy, launch_testing_actions.ReadyToTest()]), {}


class TestTrajectoriesArrive(unittest.TestCase):
    """Play camera + robot, expect JointTrajectory commands."""

    def test_commands_arrive(self) -> None:
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node('policy_launch_test', context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            received: list[JointTrajectory] = []
            node.create_subscription(JointTrajectory, COMMAND_TOPIC, received.append, 10)
            rgb_pub = node.create_publisher(Image, '/camera/color/image_raw', 10)
            depth_pub = node.create_publisher(Image, '/camera/depth/image_raw', 10)
            joints_pub = node.create_publisher(JointState, '/joint_states', 10)
            rng = np.random.default_rng(0)
            rgb = image_codec.fill_image_msg(
                Image(), image_codec.encode_rgb8(rng.integers(0, 256, (48, 64, 3), np.uint8))
            )
            depth = image_codec.fill_image_msg(
                Image(), image_codec.encode_depth(np.full((48, 64), 0.8, np.float32))
            )
            joints = JointState()
            joints.name = ['finger_joint', *reversed(JOINTS)]
            joints.position = [0.0, 1.5, 0.9, 0.0, -2.2, 3.1, 0.3, 0.0]
            end = time.monotonic() + 60.0
            while len(received) < 3 and time.monotonic() < end:
                stamp = node.get_clock().now().to_msg()
                for msg, pub in ((rgb, rgb_pub), (depth, depth_pub), (joints, joints_pub)):
                    msg.header.stamp = stamp
                    pub.publish(msg)
                executor.spin_once(timeout_sec=0.03)
            self.assertGreaterEqual(len(received), 3)
            for msg in received:
                self.assertEqual(list(msg.joint_names), JOINTS)
                self.assertGreater(len(msg.points), 0)
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=context)


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):
    """Every process of the launch file exits cleanly."""

    def test_exit_code_zero(self, proc_info: object) -> None:
        launch_testing_asserts.assertExitCodes(proc_info)
