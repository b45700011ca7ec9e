"""
DDS tests of the policy node with the camera streams of a real Kinova Gen3.

The vision module (kinova_vision) sends 1280x720 rgb8 colour and 480x270 16UC1 depth; the
Kortex driver with a Robotiq 2F-85 sends 8 joints (7 arm + ``robotiq_85_left_knuckle_joint``)
with positions, velocities and efforts, in an order of its own. The node must fit each stream
to the model input on its own, pick the arm joints by name, publish commands and the predicted
end-effector path (also in a dry run), and warn once when the streams differ from the
checkpoint's training geometry.
"""

from collections.abc import Callable, Iterator
import json
from pathlib import Path
import signal
import threading
from typing import Any

from helpers import node_checkpoint, PolicyNodeProcess, wait_for
from kinova_policy_ros.core import image_codec, kinematics
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.data.preprocess import StreamGeometry
from nav_msgs.msg import Path as PathMsg
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

pytestmark = [pytest.mark.dds, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = ROOT / 'config' / 'policy.yaml'
JOINTS = [f'joint_{i}' for i in range(1, 8)]
RGB_TOPIC = '/camera/color/image_raw'
DEPTH_TOPIC = '/camera/depth/image_raw'
COMMAND_TOPIC = '/gen3_test/joint_trajectory'
PRED_HORIZON = 12
Q_MEAS = np.array([0.1, 0.3, 3.0, -2.2, 0.05, 0.9, 1.5])
WAIT = 60.0
WARNING = 'camera streams differ from the training data'


def _checkpoint(out: Path, rgb_hw: tuple[int, int], depth_hw: tuple[int, int]) -> Path:
    """Return a small random checkpoint that says it was trained on these stream sizes."""
    ckpt = node_checkpoint(out, seed=5)
    config = json.loads((ckpt / 'config.json').read_text())
    geometry = StreamGeometry((rgb_hw,), (depth_hw,), (24, 32), None, 'center_crop')
    config['geometry'] = geometry.to_dict()
    (ckpt / 'config.json').write_text(json.dumps(config))
    return ckpt


def gen3_joint_state(q: np.ndarray) -> JointState:
    """8 joints in the driver's own order: the arm and the 2F-85, with velocities and efforts."""
    names = [*JOINTS, 'robotiq_85_left_knuckle_joint']
    positions = [*q.tolist(), 0.4]
    order = [7, 3, 0, 6, 2, 5, 1, 4]
    msg = JointState()
    msg.name = [names[i] for i in order]
    msg.position = [positions[i] for i in order]
    msg.velocity = [0.01 * i for i in order]
    msg.effort = [1.5 - 0.2 * i for i in order]
    return msg


class Gen3:
    """Camera (1280x720 rgb8 + 480x270 16UC1) and robot: publishes, records what comes back."""

    def __init__(self, node_name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('gen3_streams_test', context=self.context)
        rng = np.random.default_rng(1)
        self.rgb = image_codec.fill_image_msg(
            Image(), image_codec.encode_rgb8(rng.integers(0, 256, (720, 1280, 3), np.uint8))
        )
        depth = rng.uniform(0.3, 2.0, (270, 480)).astype(np.float32)
        self.depth = image_codec.fill_image_msg(Image(), image_codec.encode_depth(depth))
        self.joints = gen3_joint_state(Q_MEAS)
        reliable = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        n = self.node
        self.pubs = [
            (self.rgb, n.create_publisher(Image, RGB_TOPIC, reliable)),
            (self.depth, n.create_publisher(Image, DEPTH_TOPIC, reliable)),
            (self.joints, n.create_publisher(JointState, '/joint_states', 10)),
        ]
        self.lock = threading.Lock()
        self.commands: list[JointTrajectory] = []
        self.predicted: list[JointTrajectory] = []
        self.paths: list[PathMsg] = []
        n.create_subscription(JointTrajectory, COMMAND_TOPIC, self._store(self.commands), 10)
        n.create_subscription(
            JointTrajectory, f'/{node_name}/predicted_trajectory', self._store(self.predicted), 10
        )
        n.create_subscription(
            PathMsg, f'/{node_name}/predicted_ee_path', self._store(self.paths), 10
        )
        n.create_timer(0.1, self.publish)  # 10 Hz: 2.8 MB colour frames on a shared machine
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _store(self, store: list[Any]) -> Callable[[Any], None]:
        def append(msg: Any) -> None:
            with self.lock:
                store.append(msg)

        return append

    def publish(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        for msg, pub in self.pubs:
            msg.header.stamp = stamp
            pub.publish(msg)

    def count(self, store: list[Any]) -> int:
        with self.lock:
            return len(store)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(5)


class NodeProcess(PolicyNodeProcess):
    """The policy node on the test's topics and checkpoint; stopped with SIGTERM."""

    def __init__(self, name: str, checkpoint: Path, *params: str) -> None:
        args = ['--params-file', str(PARAMS_FILE), '-r', f'__node:={name}']
        for p in (f'checkpoint:={checkpoint}', 'device:=cpu', 'image_qos_reliable:=true',
                  'max_obs_age_s:=2.0', f'command_topic:={COMMAND_TOPIC}', *params):  # fmt: skip
            args += ['-p', p]
        super().__init__(*args)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        return super().stop(sig, timeout)


@pytest.fixture
def run_node(tmp_path: Path) -> Iterator[Callable[..., tuple[Gen3, NodeProcess]]]:
    started: list[tuple[Gen3, NodeProcess]] = []

    def start(name: str, trained_on: tuple[tuple[int, int], tuple[int, int]], *params: str):
        ckpt = _checkpoint(tmp_path / name, *trained_on)
        gen3 = Gen3(name)
        node = NodeProcess(name, ckpt, *params)
        started.append((gen3, node))
        return gen3, node

    yield start
    for gen3, node in started:
        rc = node.stop()
        gen3.close()
        assert rc == 0, node.output


def _matching_prediction(gen3: Gen3, path: PathMsg) -> JointTrajectory:
    stamp = stamp_to_ns(path.header.stamp)
    assert wait_for(
        lambda: any(stamp_to_ns(p.header.stamp) == stamp for p in list(gen3.predicted)), 10.0
    )
    with gen3.lock:
        return next(p for p in gen3.predicted if stamp_to_ns(p.header.stamp) == stamp)


def test_gen3_streams_and_joint_states_give_commands_and_the_ee_path(run_node):
    gen3, node = run_node(
        'kinova_policy_gen3', ((720, 1280), (270, 480)), 'enabled_on_start:=true'
    )
    assert wait_for(lambda: gen3.count(gen3.commands) >= 3), node.output
    with gen3.lock:
        commands = list(gen3.commands)
    for msg in commands:
        assert list(msg.joint_names) == JOINTS  # the gripper joint is not commanded
        assert 1 <= len(msg.points) and all(len(p.positions) == 7 for p in msg.points)
    assert wait_for(lambda: gen3.count(gen3.paths) >= 2), node.output
    with gen3.lock:
        path = gen3.paths[-1]
    assert path.header.frame_id == 'base_link'
    assert len(path.poses) == PRED_HORIZON
    pred = np.array([p.positions for p in _matching_prediction(gen3, path).points])
    xyz, _ = kinematics.fk(pred)
    got = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in path.poses])
    np.testing.assert_allclose(got, xyz, atol=1e-9)
    assert all(p.header.frame_id == 'base_link' for p in path.poses)
    # Each stream was fitted on its own, and these are the sizes the model was trained on.
    assert 'rgb 1280x720 -> box 960x720 at x=160 y=0 -> 32x24' in node.output
    assert 'depth 480x270 -> box 360x270 at x=60 y=0 -> 32x24' in node.output
    assert WARNING not in node.output
    assert 'invalid input' not in node.output


def test_dry_run_publishes_the_path_before_enable_and_warns_once_about_other_sizes(run_node):
    gen3, node = run_node(
        'kinova_policy_gen3_dry', ((480, 640), (480, 640)), 'dry_run:=true', 'base_frame:=base'
    )
    # Not enabled (policy.yaml) and a dry run: plans, paths, no command publisher at all.
    assert wait_for(lambda: gen3.count(gen3.paths) >= 4), node.output
    with gen3.lock:
        path = gen3.paths[-1]
    assert path.header.frame_id == 'base' and len(path.poses) == PRED_HORIZON
    pred = np.array([p.positions for p in _matching_prediction(gen3, path).points])
    got = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in path.poses])
    np.testing.assert_allclose(got, kinematics.fk(pred)[0], atol=1e-9)
    assert gen3.node.count_publishers(COMMAND_TOPIC) == 0
    assert gen3.count(gen3.commands) == 0
    warnings = [ln for ln in node.lines if WARNING in ln]
    assert len(warnings) == 1, node.output
    assert 'rgb stream is 1280x720 (aspect 1.78), trained on 640x480 (aspect 1.33)' in warnings[0]
    assert 'depth stream is 480x270 (aspect 1.78)' in warnings[0]
