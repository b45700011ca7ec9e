"""
``sim_node`` over real DDS: the driver and camera topics, trajectory following, resets.

The node runs in a child process (as ``ros2 run`` would start it); the test talks to it through
its own rclpy context. Also records one expert episode over DDS (``record_demos --via-dds``) and
converts it.
"""

from collections.abc import Callable, Iterator
import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time
from typing import Any

from helpers import wait_for
from kinova_policy_ros.core import kinematics as kin
from kinova_policy_ros.core.stamps import stamp_to_ns
from kinova_policy_ros.ros.messages import duration_msg
from kinova_policy_ros.sim.env import GRIPPER_JOINT, intrinsics_from_fovy, TCP_OFFSET_2F85
from kinova_policy_ros.sim.ros import sim_node
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

pytestmark = [pytest.mark.dds, pytest.mark.slow]

WAIT = 30.0


class Harness:
    """A test node that listens to everything sim_node publishes and can command it."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('sim_node_test', context=self.context)
        self.started_ns = time.time_ns()
        self.last: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.stamps: dict[str, list[int]] = {}
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for key, msg_type in (
            ('joint_states', JointState),
            ('rgb', Image),
            ('depth', Image),
            ('camera_info', CameraInfo),
            ('task_state', String),
        ):
            self.node.create_subscription(
                msg_type, sim_node.DEFAULT_TOPICS[key], self._make_cb(key), qos
            )
        self.pub = self.node.create_publisher(
            JointTrajectory, sim_node.DEFAULT_TOPICS['command'], qos
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _make_cb(self, key: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            self.last[key] = msg
            self.counts[key] = self.counts.get(key, 0) + 1
            header = getattr(msg, 'header', None)
            if header is not None:
                self.stamps.setdefault(key, []).append(stamp_to_ns(header.stamp))

        return cb

    def task(self) -> dict[str, Any]:
        return json.loads(self.last['task_state'].data)

    def q(self) -> np.ndarray:
        msg = self.last['joint_states']
        index = {n: i for i, n in enumerate(msg.name)}
        return np.array([msg.position[index[n]] for n in kin.JOINT_NAMES])

    def call(self, srv_type: Any, name: str, request: Any) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=WAIT), f'{name} not available'
            future = client.call_async(request)
            assert wait_for(future.done), f'{name} did not answer'
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)


SIM_NODE_MODULE = 'kinova_policy_ros.sim.ros.sim_node'


@pytest.fixture(scope='module')
def sim_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, '-m', SIM_NODE_MODULE, '--ros-args', '-p', 'seed:=3'],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope='module')
def harness(sim_process: subprocess.Popen[bytes]) -> Iterator[Harness]:
    h = Harness()
    try:
        ok = wait_for(lambda: len(h.counts) == 5 and h.counts.get('rgb', 0) >= 3, 60.0)
        assert ok, f'topics received: {h.counts} (sim_node rc={sim_process.poll()})'
        yield h
    finally:
        h.close()


def test_publishes_driver_and_camera_topics(harness: Harness):
    js = harness.last['joint_states']
    assert sorted(js.name) == sorted([*kin.JOINT_NAMES, GRIPPER_JOINT])
    assert list(js.name) != sorted(js.name)  # order is not guaranteed: consumers map by name
    assert len(js.position) == len(js.velocity) == len(js.effort) == 8  # efforts: servo torques
    assert dict(zip(js.name, js.effort))[GRIPPER_JOINT] == 0.0
    q = harness.q()
    assert (np.abs(q[kin.CONTINUOUS]) <= np.pi).all()  # wrapped like the Kortex driver
    rgb, depth, info = (harness.last[k] for k in ('rgb', 'depth', 'camera_info'))
    assert (rgb.encoding, rgb.height, rgb.width, rgb.step) == ('rgb8', 96, 128, 384)
    assert (depth.encoding, depth.height, depth.width) == ('16UC1', 96, 128)
    assert rgb.header.frame_id == info.header.frame_id == 'camera_color_optical_frame'
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), intrinsics_from_fovy(128, 96, 50.0))
    # stamped at render time on the node clock (system time): after this test node started
    assert harness.started_ns <= stamp_to_ns(rgb.header.stamp) <= time.time_ns()
    # Each frame's camera info carries the frame's stamp (compare stamps seen, not the latest
    # message of each topic, which can be one frame apart).
    rgb_stamps, info_stamps = list(harness.stamps['rgb']), list(harness.stamps['camera_info'])
    both = [s for s in info_stamps[:-1] if s >= rgb_stamps[0]]  # the last may be in flight
    assert both and set(both) <= set(rgb_stamps)


def test_streams_are_stamped_in_order_at_their_rates(harness: Harness):
    n_js, n_rgb = len(harness.stamps['joint_states']), len(harness.stamps['rgb'])
    assert wait_for(
        lambda: len(harness.stamps['joint_states']) >= n_js + 100
        and len(harness.stamps['rgb']) >= n_rgb + 10,
        60.0,
    ), {k: len(v) for k, v in harness.stamps.items()}
    js = np.array(harness.stamps['joint_states'][n_js:])
    rgb = np.array(harness.stamps['rgb'][n_rgb:])
    assert (np.diff(js) > 0).all() and (np.diff(rgb) > 0).all()  # strictly increasing
    # each camera frame stamps its RGB and depth images alike
    depth = set(harness.stamps['depth'])
    assert sum(int(s) in depth for s in rgb[:-1]) >= len(rgb) - 3
    # timers never publish more often than their period (100 Hz, 15 Hz): count over a span
    span_s = (js[-1] - js[0]) * 1e-9
    assert len(js) <= 100 * span_s + 30, (len(js), span_s)
    span_s = (rgb[-1] - rgb[0]) * 1e-9
    assert len(rgb) <= 15 * span_s + 6, (len(rgb), span_s)


def _trajectory(
    q_from: np.ndarray, q_to: np.ndarray, duration: float, names: list[str]
) -> JointTrajectory:
    msg = JointTrajectory()
    msg.joint_names = names
    index = [kin.JOINT_NAMES.index(n) for n in names]
    for s in np.linspace(0.1, 1.0, 10):
        point = JointTrajectoryPoint()
        blend = 3 * s**2 - 2 * s**3
        rate = (6 * s - 6 * s**2) / duration
        point.positions = [float(v) for v in (q_from + blend * (q_to - q_from))[index]]
        point.velocities = [float(v) for v in (rate * (q_to - q_from))[index]]
        point.time_from_start = duration_msg(s * duration)
        msg.points.append(point)
    return msg


def test_follows_a_trajectory_and_rejects_a_bad_one(harness: Harness):
    q0 = harness.q()
    goal = q0.copy()
    goal[1] += 0.3
    goal[3] -= 0.2
    names = [kin.JOINT_NAMES[i] for i in (6, 2, 0, 4, 1, 5, 3)]  # any order: mapped by name
    harness.pub.publish(_trajectory(q0, goal, 1.0, names))
    assert wait_for(lambda: np.abs(harness.q() - goal).max() < 0.01, 10.0), harness.q() - goal
    assert harness.task()['trajectories_accepted'] >= 1
    bad = _trajectory(goal, q0, 1.0, list(kin.JOINT_NAMES))
    bad.joint_names = bad.joint_names[:6]
    for p in bad.points:
        p.positions = p.positions[:6]
        p.velocities = p.velocities[:6]
    harness.pub.publish(bad)
    assert wait_for(lambda: harness.task()['trajectories_rejected'] == 1, 10.0)
    assert 'missing' in harness.task()['last_rejection']
    time.sleep(0.3)
    np.testing.assert_allclose(harness.q(), goal, atol=0.01)  # the bad one did not move it


def test_reset_services_and_task_state(harness: Harness):
    res = harness.call(Trigger, '/sim_node/reset', Trigger.Request())
    assert res.success and json.loads(res.message)['seed'] == 4
    assert wait_for(lambda: harness.task()['seed'] == 4)
    param = Parameter(
        name='seed',
        value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=42),
    )
    set_res = harness.call(
        SetParameters, '/sim_node/set_parameters', SetParameters.Request(parameters=[param])
    )
    assert set_res.results[0].successful
    res = harness.call(Trigger, '/sim_node/reset_to_seed', Trigger.Request())
    episode = json.loads(res.message)
    assert res.success and episode['seed'] == 42
    assert wait_for(lambda: harness.task()['seed'] == 42)
    task = harness.task()
    assert task['target'] == pytest.approx(episode['target'])
    assert task['distance'] == pytest.approx(
        np.linalg.norm(np.subtract(task['tcp'], task['target']))
    )
    assert task['distance_flange'] == pytest.approx(
        np.linalg.norm(np.subtract(task['ee'], task['target']))
    )
    assert task['success'] is (task['distance'] <= task['success_threshold'])


def test_record_one_expert_episode_over_dds(sim_process: subprocess.Popen[bytes], tmp_path: Path):
    """record_demos --via-dds starts its own sim_node: stop the module's one first."""
    sim_process.send_signal(2)
    sim_process.wait(timeout=15)
    from kinova_policy_ros.sim.ros.record_demos import main as record_main

    out = tmp_path / 'dds'
    assert record_main(['--out', str(out), '--episodes', '1', '--seed', '7', '--via-dds']) == 0
    manifest = json.loads((out / 'episodes.json').read_text())['episodes']
    assert manifest[0]['seed'] == 7 and manifest[0]['success']
    bag_to_npz = pytest.importorskip('kinova_policy_ros.bag.cli')
    npz = tmp_path / 'npz'
    assert bag_to_npz.main([str(out / 'episode_000007'), '--out', str(npz), '--no-progress']) == 0
    from kinova_policy_ros.data.schema import load_episode

    ep = load_episode(npz / 'episode_000007.npz')
    assert len(ep.stamp_ns) > 10  # one per camera frame: ~60 in the 4 s of the episode
    assert (np.diff(ep.stamp_ns) > 0).all()
    above = np.asarray(manifest[0]['target']) + np.array([0.0, 0.0, TCP_OFFSET_2F85])
    assert np.linalg.norm(ep.ee_xyz[-1] - above) < 0.03


@pytest.mark.parametrize(
    ('param', 'message'),
    [('camera_rate_hz:=0.0', 'camera_rate_hz must be > 0'), ('camera_rate_hz:=15', 'type')],
)
def test_bad_parameters_exit_with_a_message(param: str, message: str):
    proc = subprocess.run(
        [sys.executable, '-m', 'kinova_policy_ros.sim.ros.sim_node', '--ros-args', '-p', param],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert message in proc.stderr


def test_task_state_message_round_trip():
    state = {'episode': 3, 'distance': 0.25, 'target': [0.5, 0.0, 0.1]}
    msg = sim_node.task_state_msg(state)
    assert sim_node.task_state_from_msg(msg) == state
    assert sim_node.task_state_from_msg(type(msg)(data='not json')) is None
    assert sim_node.task_state_from_msg(type(msg)(data='[1, 2]')) is None  # not an object
